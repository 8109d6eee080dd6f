"""Shared fixtures for the cowscope Python tests.

Run with: PYTHONPATH=build/python /usr/bin/python3 -m pytest -q -W error -p no:cacheprovider tests/python
The build folder is the one whose python/ holds the imported cowscope
package (build/ by default, any other CMake build tree via PYTHONPATH);
its bin/ provides cowbench and cowtrace for the script tests.
"""
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


@pytest.fixture(scope="session")
def cowscope():
    import cowscope as mod
    return mod


@pytest.fixture(scope="session")
def build_bin(cowscope):
    """build/bin beside the build/python the module was imported from."""
    pkg = os.path.dirname(os.path.realpath(cowscope.__file__))
    b = os.path.join(os.path.dirname(os.path.dirname(pkg)), "bin")
    if not os.access(os.path.join(b, "cowbench"), os.X_OK):
        pytest.fail(f"{b}/cowbench not found beside the imported cowscope module ({pkg}): build it")
    return b


@pytest.fixture(scope="session")
def root():
    return ROOT
