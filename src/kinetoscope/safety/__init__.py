"""Safety and provenance: the prompt policy, the invisible watermark, C2PA manifests, detection.

Hook-ups for generation (the pipeline and the service call these):

- before anything is computed: ``load_policy().enforce(prompt)`` (raises
  :class:`ContentPolicyError`, HTTP 400 ``content_policy_violation``);
- on every decoded frame before it is written or returned:
  ``embed_watermark(frames, model_id_for(model_dir))``;
- after an mp4 is written, when the user gave a certificate chain and key
  (``KINETOSCOPE_C2PA_CERT``/``KEY``): ``SigningKey.from_env().sign(path, model_id)``.
"""

from kinetoscope.safety.detect import Detection, detect, model_id_for, model_registry
from kinetoscope.safety.policy import ContentPolicyError, PolicyDecision, PromptPolicy, load_policy
from kinetoscope.safety.provenance import SigningKey, read_provenance, sign_file
from kinetoscope.safety.watermark import WatermarkReading, embed_watermark, model_hash, read_watermark, watermark_file

__all__ = [
    "ContentPolicyError",
    "Detection",
    "PolicyDecision",
    "PromptPolicy",
    "SigningKey",
    "WatermarkReading",
    "detect",
    "embed_watermark",
    "load_policy",
    "model_hash",
    "model_id_for",
    "model_registry",
    "read_provenance",
    "read_watermark",
    "sign_file",
    "watermark_file",
]
