from .exportable import ExportableDetector, load_image
from .onnx import export_onnx, max_abs_differences, onnx_predict

__all__ = ['ExportableDetector', 'load_image', 'export_onnx', 'max_abs_differences',
           'onnx_predict']
