"""Hand private files to nginx or Caddy when a trusted proxy can take them, and
stream them correctly (Range, conditional requests) when none can.

See the README for the settings, the trust model and the proxy configuration.
"""

from .asgi import XAccelMiddleware
from .errors import ConfigError
from .settings import Settings
from .sources import marker_for_path
from .wsgi import XAccelWSGIMiddleware

__all__ = ["ConfigError", "Settings", "XAccelMiddleware", "XAccelWSGIMiddleware", "marker_for_path"]
