"""pytest plugin for gepa's own tests: ``import gepa`` is served by gepetto.

Loaded with ``-p tests.gepa_upstream.alias_plugin`` before gepa's test modules are
collected, so their ``import gepa`` and ``from gepa.core... import`` lines (and the
``patch("gepa....")`` targets) resolve through :mod:`gepetto.gepa_alias`.
"""

import gepetto.gepa_alias

gepetto.gepa_alias.install()
