"""A plain numpy forward pass of the same model: the benchmark's baseline and the tests' reference.

It is the textbook pass: a padded (texts x longest) batch with an attention
mask, one numpy operation per step of each formula. It shares nothing with
``chroma.embedding.model.encode_packed`` but the weights, so agreement between
the two checks the fused kernels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from chroma.embedding.model import Weights


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz and Stegun 7.1.26 (numpy has no erf); absolute error below 2e-7.
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(np.float32(2.0))))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * weight + bias


def encode_padded(weights: Weights, token_ids: Sequence[np.ndarray]) -> np.ndarray:
    """The normalised embeddings of texts given as token id arrays, computed on a padded batch."""
    count, longest = len(token_ids), max(len(ids) for ids in token_ids)
    ids = np.zeros((count, longest), dtype=np.int64)
    mask = np.zeros((count, longest), dtype=np.float32)
    for row, text_ids in enumerate(token_ids):
        ids[row, : len(text_ids)] = text_ids
        mask[row, : len(text_ids)] = 1.0
    hidden = (weights.word_embeddings[ids] + weights.position_embeddings[:longest][None]
              + weights.token_type_embedding).reshape(count * longest, -1)
    hidden = _layer_norm(hidden, weights.embedding_norm_weight, weights.embedding_norm_bias, weights.eps)
    width = hidden.shape[-1]
    heads, head_dim = weights.heads, width // weights.heads
    additive_mask = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]

    def split_heads(x: np.ndarray) -> np.ndarray:  # (count * longest, width) -> (count, heads, longest, head_dim)
        return np.ascontiguousarray(x.reshape(count, longest, heads, head_dim).transpose(0, 2, 1, 3))

    for layer in weights.layers:
        # the linear layers as one matrix product over every row of the batch
        qkv = hidden @ layer.qkv_weight + layer.qkv_bias
        q, k, v = (split_heads(qkv[:, i * width:(i + 1) * width]) for i in range(3))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(np.float32(head_dim)) + additive_mask
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probabilities = scores / scores.sum(axis=-1, keepdims=True)
        context = (probabilities @ v).transpose(0, 2, 1, 3).reshape(count * longest, width)
        attended = context @ layer.attention_out_weight + layer.attention_out_bias
        hidden = _layer_norm(attended + hidden, layer.attention_norm_weight, layer.attention_norm_bias, weights.eps)
        intermediate = _gelu(hidden @ layer.intermediate_weight + layer.intermediate_bias)
        output = intermediate @ layer.output_weight + layer.output_bias
        hidden = _layer_norm(output + hidden, layer.output_norm_weight, layer.output_norm_bias, weights.eps)
    hidden = hidden.reshape(count, longest, width)
    pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)
