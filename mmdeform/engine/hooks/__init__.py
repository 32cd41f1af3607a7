from .atomic_checkpoint_hook import AtomicCheckpointHook, AtomicLocalBackend
from .class_number_check_hook import ClassNumberCheckHook
from .exact_resume_hook import ExactResumeHook
from .finetune_hook import FinetuneHook, FinetuneReport, finetune_state_dict
from .inference_speed_hook import InferenceSpeedHook
from .non_finite_loss_hook import NonFiniteLossHook

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'ClassNumberCheckHook', 'ExactResumeHook',
    'FinetuneHook', 'FinetuneReport', 'finetune_state_dict', 'InferenceSpeedHook',
    'NonFiniteLossHook'
]
