from bias_unlearn.callbacks.adapter_checkpoint import AdapterCheckpoint
from bias_unlearn.callbacks.balance_stopping import BalancedStereotypeStopping
from bias_unlearn.callbacks.non_finite import NonFiniteGuard
from bias_unlearn.callbacks.resume_checkpoint import ResumeCheckpoint
from bias_unlearn.callbacks.swapping import DynamicSwapping

__all__ = ["AdapterCheckpoint", "BalancedStereotypeStopping", "DynamicSwapping", "NonFiniteGuard", "ResumeCheckpoint"]
