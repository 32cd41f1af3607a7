from .inference import (category_ids, inference_detector, inference_detector_batch,
                        init_detector, result_to_arrays)

__all__ = ['init_detector', 'inference_detector', 'inference_detector_batch', 'category_ids',
           'result_to_arrays']
