"""Drivers for third-party P2P stacks in natlab's lab (README "Interop"): each starts one stack as side A or B
inside a lab host, with the lab's servers, and prints one :class:`interop.report.Report` as JSON.

These modules run inside the interop image (images/Dockerfile.interop), the aiortc driver under
/opt/aiortc/bin/python; the host side that orchestrates them is scenarios/interop_stacks.py.
"""
