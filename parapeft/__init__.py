"""PARA: Prompt-Aware Representation Adjustment for frozen causal LMs.

The entry points users call live here, as in peft and transformers::

    from parapeft import load_base_model, ParaConfig, ParaModel, get_para_model
"""

from .adapter_io import AdapterLoadError
from .architectures import ARCHITECTURES, UnsupportedArchitectureError
from .backbones import DEFAULT_MODEL, NAMED_MODELS, load_base_model
from .config import ParaConfig, PeftKeyWarning
from .evaluation import EvalResult, evaluate
from .model import BASE_ADAPTER, ParaModel, get_para_model
from .peft_surface import NotSupportedForParaError
from .tasks import TASKS, Example, Task, get_task, render_prompt

__all__ = [
    "ARCHITECTURES",
    "AdapterLoadError",
    "BASE_ADAPTER",
    "DEFAULT_MODEL",
    "EvalResult",
    "Example",
    "NAMED_MODELS",
    "NotSupportedForParaError",
    "ParaConfig",
    "ParaModel",
    "PeftKeyWarning",
    "TASKS",
    "Task",
    "UnsupportedArchitectureError",
    "evaluate",
    "get_para_model",
    "get_task",
    "load_base_model",
    "render_prompt",
]
__version__ = "0.1.0"
