"""Provider auditor: is the model a hosting provider serves really the model it claims?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("auditor")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
