from bias_unlearn.unlearning.callbacks.adapter_checkpoint import AdapterCheckpoint
from bias_unlearn.unlearning.callbacks.balance_stopping import BalancedStereotypeStopping
from bias_unlearn.unlearning.callbacks.non_finite import NonFiniteGuard
from bias_unlearn.unlearning.callbacks.resume_checkpoint import ResumeCheckpoint
from bias_unlearn.unlearning.callbacks.swapping import DynamicSwapping
from bias_unlearn.unlearning.callbacks.type_weighting import AdaptiveTypeWeights

__all__ = [
    "AdaptiveTypeWeights",
    "AdapterCheckpoint",
    "BalancedStereotypeStopping",
    "DynamicSwapping",
    "NonFiniteGuard",
    "ResumeCheckpoint",
]
