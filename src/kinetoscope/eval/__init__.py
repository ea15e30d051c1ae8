"""Weight-free evaluation of world simulation: detectors, metrics, suites and reports.

Objects are found in frames alone (colour masks, connected components, sub-pixel centroids,
shapes; :mod:`.detect`), and scored against a world clip's ground truth (:mod:`.metrics`) or
a prompt (:mod:`.adherence`): the velocity error of Kang et al. (2024), prompt adherence,
object permanence, scene consistency under a pan, temporal flicker, conditioning fidelity and
loop seams. :mod:`.suites` names sets of clips and metrics and runs a generator over them;
:mod:`.report` writes JSON and a Markdown report with pictures.
"""

from kinetoscope.eval.adherence import prompt_adherence
from kinetoscope.eval.detect import Detection, detect_video, match_objects, to_world
from kinetoscope.eval.metrics import (
    THRESHOLDS,
    MetricResult,
    conditioning_fidelity,
    loop_seam,
    object_permanence,
    scene_consistency,
    temporal_flicker,
    velocity_error,
)
from kinetoscope.eval.suites import (
    SUITES,
    ClipScore,
    GenerationRequest,
    Generator,
    Suite,
    SuiteResult,
    run_suite,
    score_clip,
    score_manifest,
    world_oracle,
)
from kinetoscope.language.claims import PromptClaims, prompt_claims

__all__ = [
    "SUITES",
    "THRESHOLDS",
    "ClipScore",
    "Detection",
    "GenerationRequest",
    "Generator",
    "MetricResult",
    "PromptClaims",
    "Suite",
    "SuiteResult",
    "conditioning_fidelity",
    "detect_video",
    "loop_seam",
    "match_objects",
    "object_permanence",
    "prompt_adherence",
    "prompt_claims",
    "run_suite",
    "scene_consistency",
    "score_clip",
    "score_manifest",
    "temporal_flicker",
    "to_world",
    "velocity_error",
    "world_oracle",
]
