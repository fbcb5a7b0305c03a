"""Everything is in setup.cfg.  This file exists for the pips that Python
3.6 hosts ship (RHEL 7/8: pip 9; Python 3.6's ensurepip: pip 18.1), which
predate PEP 517 and can only build a project by running its setup.py."""

from setuptools import setup

setup()
