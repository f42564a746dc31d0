"""The all-MiniLM-L6-v2 encoder (BERT: 6 layers, 384 wide, 12 heads), mean-pooled and L2-normalised.

The weights are read with ``safetensors`` into numpy. The forward pass runs on
packed tokens: the real tokens of every text of a batch stacked into one
matrix, so the matrix products (numpy's BLAS, every core) never compute a
padding row, and the compiled core does the rest in one pass per step
(``csrc/embedding_ops.h``: bias + GELU, bias + residual + layer norm, and
attention per text and head).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

EMBEDDING_DIMENSION = 384
MAX_TOKENS = 256
"""Texts are truncated to this many tokens, [CLS] and [SEP] included, as sentence-transformers does."""


@dataclass(frozen=True)
class Layer:
    qkv_weight: np.ndarray  # (hidden, 3 hidden): x @ qkv_weight gives query | key | value
    qkv_bias: np.ndarray
    attention_out_weight: np.ndarray
    attention_out_bias: np.ndarray
    attention_norm_weight: np.ndarray
    attention_norm_bias: np.ndarray
    intermediate_weight: np.ndarray
    intermediate_bias: np.ndarray
    output_weight: np.ndarray
    output_bias: np.ndarray
    output_norm_weight: np.ndarray
    output_norm_bias: np.ndarray


@dataclass(frozen=True)
class Weights:
    word_embeddings: np.ndarray
    position_embeddings: np.ndarray
    token_type_embedding: np.ndarray  # type 0: every token of a single text
    embedding_norm_weight: np.ndarray
    embedding_norm_bias: np.ndarray
    layers: tuple[Layer, ...]
    heads: int
    eps: float

    @classmethod
    def load(cls, directory: Path) -> "Weights":
        """Reads ``config.json`` and ``model.safetensors`` of a BERT model directory."""
        from safetensors.numpy import load_file

        config = json.loads((directory / "config.json").read_text())
        tensors = load_file(str(directory / "model.safetensors"))

        def weight(name: str) -> np.ndarray:
            # torch keeps (out, in); x @ W.T as one contiguous (in, out) matrix
            return np.ascontiguousarray(tensors[name].T, dtype=np.float32)

        def vector(name: str) -> np.ndarray:
            return np.ascontiguousarray(tensors[name], dtype=np.float32)

        layers = []
        for i in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            parts = ("query", "key", "value")
            layers.append(Layer(
                qkv_weight=np.ascontiguousarray(np.concatenate(
                    [weight(f"{p}attention.self.{part}.weight") for part in parts], axis=1)),
                qkv_bias=np.concatenate([vector(f"{p}attention.self.{part}.bias") for part in parts]),
                attention_out_weight=weight(f"{p}attention.output.dense.weight"),
                attention_out_bias=vector(f"{p}attention.output.dense.bias"),
                attention_norm_weight=vector(f"{p}attention.output.LayerNorm.weight"),
                attention_norm_bias=vector(f"{p}attention.output.LayerNorm.bias"),
                intermediate_weight=weight(f"{p}intermediate.dense.weight"),
                intermediate_bias=vector(f"{p}intermediate.dense.bias"),
                output_weight=weight(f"{p}output.dense.weight"),
                output_bias=vector(f"{p}output.dense.bias"),
                output_norm_weight=vector(f"{p}output.LayerNorm.weight"),
                output_norm_bias=vector(f"{p}output.LayerNorm.bias"),
            ))
        return cls(
            word_embeddings=vector("embeddings.word_embeddings.weight"),
            position_embeddings=vector("embeddings.position_embeddings.weight"),
            token_type_embedding=vector("embeddings.token_type_embeddings.weight")[0],
            embedding_norm_weight=vector("embeddings.LayerNorm.weight"),
            embedding_norm_bias=vector("embeddings.LayerNorm.bias"),
            layers=tuple(layers),
            heads=int(config["num_attention_heads"]),
            eps=float(config["layer_norm_eps"]),
        )


def flops_per_token(weights: Weights, length: int) -> float:
    """Multiply-adds x 2 of one token of a text of ``length`` tokens: the matrix products and attention."""
    hidden = weights.word_embeddings.shape[1]
    per_layer = sum(2 * w.size for w in (weights.layers[0].qkv_weight, weights.layers[0].attention_out_weight,
                                         weights.layers[0].intermediate_weight, weights.layers[0].output_weight))
    return len(weights.layers) * (per_layer + 4 * length * hidden)


def mean_pool_normalize(hidden: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """One L2-normalised mean of the rows ``offsets[s]:offsets[s+1]`` of ``hidden`` per text."""
    sums = np.add.reduceat(hidden, offsets[:-1], axis=0)
    means = sums / np.diff(offsets)[:, None].astype(np.float32)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return (means / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def encode_packed(weights: Weights, token_ids: Sequence[np.ndarray], parallel: bool = True) -> np.ndarray:
    """The normalised embeddings of texts given as token id arrays (with [CLS] and [SEP]), one row each.

    ``parallel=False`` runs the compiled kernels on the calling thread only, for a caller that
    runs a batch per core itself (the matrix products follow numpy's BLAS setting).
    """
    from chroma import _core

    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
    offsets = np.zeros(len(token_ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    rows = int(offsets[-1])
    ids = np.concatenate(token_ids)
    positions = np.arange(rows, dtype=np.int64) - np.repeat(offsets[:-1], lengths)

    hidden = weights.word_embeddings[ids]
    hidden += weights.position_embeddings[positions]
    _core.embedding_residual_layer_norm(None, weights.token_type_embedding, hidden, weights.embedding_norm_weight,
                                        weights.embedding_norm_bias, weights.eps, parallel)
    width = hidden.shape[1]
    qkv = np.empty((rows, 3 * width), np.float32)
    context = np.empty((rows, width), np.float32)
    projected = np.empty((rows, width), np.float32)
    intermediate = np.empty((rows, weights.layers[0].intermediate_weight.shape[1]), np.float32)
    for layer in weights.layers:
        np.matmul(hidden, layer.qkv_weight, out=qkv)
        _core.embedding_attention(qkv, layer.qkv_bias, offsets, context, weights.heads, parallel)
        np.matmul(context, layer.attention_out_weight, out=projected)
        _core.embedding_residual_layer_norm(projected, layer.attention_out_bias, hidden, layer.attention_norm_weight,
                                            layer.attention_norm_bias, weights.eps, parallel)
        np.matmul(hidden, layer.intermediate_weight, out=intermediate)
        _core.embedding_bias_gelu(intermediate, layer.intermediate_bias, parallel)
        np.matmul(intermediate, layer.output_weight, out=projected)
        _core.embedding_residual_layer_norm(projected, layer.output_bias, hidden, layer.output_norm_weight,
                                            layer.output_norm_bias, weights.eps, parallel)
    return mean_pool_normalize(hidden, offsets)
