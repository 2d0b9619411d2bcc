"""Verifiable rewards, keyed by `spec.reward.type`: math answers and code run in a sandbox."""
from seesaw.rl.rewards.code import code_reward
from seesaw.rl.rewards.math import extract_answer, math_reward

__all__ = ["code_reward", "extract_answer", "math_reward"]
