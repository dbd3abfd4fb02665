"""The translation function for user-facing strings.

Inside Slicer, strings go through Slicer's translation machinery
(``slicer.i18n.tr``); the slicer-core wheel used for testing has no ``slicer.i18n``,
so there the strings pass through unchanged.
"""

try:
    from slicer.i18n import tr as _  # noqa: F401
except ImportError:  # slicer-core or plain Python: no translations available

    def _(text: str) -> str:
        return text
