"""Language: the re-captioner (video -> detailed caption) and the prompt expander (prompt -> caption).

``expand_prompt("a red ball", seed=0)`` writes a caption in the style the models trained on;
``parse_caption`` / ``parse_prompt`` read captions and prompts back into the world's
vocabulary, and ``claims.prompt_claims`` keeps what evaluation can check of them;
:class:`Captioner` is the built-in video-to-text model (``kinetoscope train captioner``);
:class:`OpenAIBackend` does both jobs with any OpenAI-compatible chat endpoint.
Heavy parts (torch, the SDK) load only when used.
"""

from kinetoscope.language.expand import Expansion, expand_prompt
from kinetoscope.language.parse import EventText, ObjectText, SceneText, parse_caption
from kinetoscope.language.prompt import parse_prompt

__all__ = ["EventText", "Expansion", "ObjectText", "SceneText", "expand_prompt", "parse_caption", "parse_prompt"]
