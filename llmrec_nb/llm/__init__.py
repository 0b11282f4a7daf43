"Language models: loading, the backends that run them, and scoring and generation on any backend (see `llm.base`)."
from .kernels import *
from .base import *
from .loading import *
from .transformers_engine import *
from .vllm_engine import *
from .scoring import *
# grounding is its own layer below this package; its names stay importable from here
from ..grounding import Grounded, ground, ground_list, normalise_title, valid_rate  # noqa: F401
