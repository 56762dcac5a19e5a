"""natlab NAT router: profiles, ruleset rendering, entrypoint."""
