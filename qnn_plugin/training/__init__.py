"""Training certifiably robust QNNs on the verifier's own bounds (QA-IBP), and exporting them.

    layers   QFormat, QNN (mlp / conv builders) and its layers: integer arithmetic in float32
    loss     RobustLoss: QA-IBP loss through the plugin's auto_LiRPA BoundedModule
    trainer  Schedule, TrainConfig, train, evaluate
    export   export_onnx: QDQ or fixed-point ONNX, bit-identical to the torch model
    data     load_dataset: digits (default), the shared MNIST test set, user folders / .npz
"""
from .data import Dataset, DatasetError, load_dataset, subset
from .export import ExportError, export_onnx
from .layers import QNN, ActQuant, InputQuant, QFormat, QuantConv2d, QuantLinear
from .loss import LossTerms, RobustLoss, margin_matrix
from .trainer import Schedule, TrainConfig, evaluate, train

__all__ = [
    "Dataset", "DatasetError", "load_dataset", "subset", "ExportError", "export_onnx", "QNN",
    "ActQuant", "InputQuant", "QFormat", "QuantConv2d", "QuantLinear", "LossTerms", "RobustLoss",
    "margin_matrix", "Schedule", "TrainConfig", "evaluate", "train",
]
