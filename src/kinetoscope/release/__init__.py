"""Ship a trained model: ``models/world/`` in half precision, evaluated, with its model card.

:func:`~kinetoscope.release.bundle.bundle` is ``kinetoscope bundle``: the weights
(:mod:`.weights`), the measurements (:mod:`.measure`), the training runs behind them
(:mod:`.runs`), the legs (:mod:`.legs`), the pictures (:mod:`.pictures`) and ``MODEL.md``
(:mod:`.card`).
"""

from kinetoscope.release.bundle import bundle
from kinetoscope.release.measure import SUITES
from kinetoscope.release.options import BundleOptions

__all__ = ["SUITES", "BundleOptions", "bundle"]
