from .inference import inference_detector, init_detector, result_to_arrays

__all__ = ['init_detector', 'inference_detector', 'result_to_arrays']
