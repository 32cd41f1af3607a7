from .inference_speed_hook import InferenceSpeedHook

__all__ = ['InferenceSpeedHook']
