"""The goal probability of Baumli et al. (2023), "Vision-Language Models as a Source of Rewards".

p(goal | frame) is a softmax, over the goal phrase and the task's negative phrases, of each
phrase's cosine similarity with the frame divided by a temperature. The ``clip`` feedback
backend scores frames with it and the CLIP reward thresholds it; both call this one function
(it lives here because ``feedback`` and ``reward`` do not import each other).
"""

from __future__ import annotations

import numpy as np


def baumli_probability(
    frames: np.ndarray, goal: np.ndarray, negatives: np.ndarray, temperature: float
) -> np.ndarray:
    """p(goal | frame): softmax of cosine / temperature over the goal and the negative phrases.

    Args:
        frames: ``(N, D)`` unit-norm frame embeddings.
        goal: ``(D,)`` unit-norm goal-phrase embedding.
        negatives: ``(K, D)`` unit-norm negative-phrase embeddings, ``K >= 1``.
        temperature: Softmax temperature (> 0); CLIP's learned logit scale 100 is 0.01.

    Returns:
        ``(N,)`` probabilities of the goal phrase (float64).
    """
    texts = np.vstack([np.asarray(goal, dtype=np.float64)[None, :], np.asarray(negatives, dtype=np.float64)])
    logits = np.asarray(frames, dtype=np.float64) @ texts.T / temperature  # (N, 1 + K)
    logits -= logits.max(axis=1, keepdims=True)  # stable softmax
    weights = np.exp(logits)
    return weights[:, 0] / weights.sum(axis=1)
