"""Everything is in setup.cfg.  This file exists for the pips of Python 3.6
hosts (pip 9, pip 18.1), which predate PEP 517 and build through setup.py."""

from setuptools import setup

setup()
