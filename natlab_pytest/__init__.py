"""natlab's pytest plugin: the ``natlab_lab`` fixture starts labs for another project's tests (README "Testing
your own stack with pytest"). pytest loads :mod:`natlab_pytest.plugin` through the ``pytest11`` entry point."""
