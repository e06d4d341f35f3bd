"""The request loop: one frame in, one reply out, in order. Ops are methods of Engine.

A bad request gets an error reply and the engine keeps serving; only a broken byte stream
(truncated or oversize frame) ends it.
"""

import gc
import importlib.metadata
import logging
import os
import platform
import time
from typing import Any, BinaryIO, Callable, Dict, List, Optional

import mlx.core as mx

from . import PROTOCOL, allocator, blas, sched
from .errors import EngineError, bad_request
from .rss import huge_pages_bytes, peak_rss_bytes, rss_bytes
from .batch import Request, can_batch, forward_rows
from .framing import BadFrame, FrameError, read_frame, write_frame
from .tensors import decode_tensor, dtype_name, encode_tensor

log = logging.getLogger("mlx_mesh_engine")


def _arg(msg: Dict[str, Any], name: str, kind: type, default: Any = ..., optional: bool = False) -> Any:
    if name not in msg or msg[name] is None:
        if default is not ... or optional:
            return None if default is ... else default
        raise bad_request(f"missing argument {name!r}")
    value = msg[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad_request(f"argument {name!r} must be {kind.__name__}")
    return value


def _token_ids(msg: Dict[str, Any]) -> list:
    tokens = _arg(msg, "tokens", list)
    if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens):
        raise bad_request("tokens must be a list of non-negative ints")
    return tokens


def _bytes_tensors(reply: Dict[str, Any]) -> Dict[str, Any]:
    """Tensors of a reply nested in a list, as bytes: the framing writes memoryviews without a copy
    only near the top of a frame (a decode step's row is small, so the copy costs nothing)."""
    return {k: _as_bytes(v) if isinstance(v, dict) and "data" in v else v for k, v in reply.items()}


def _as_bytes(tensor: Dict[str, Any]) -> Dict[str, Any]:
    return {**tensor, "data": bytes(tensor["data"])}


class Engine:
    def __init__(self):
        self.shard = None
        self.tokenizer = None
        self.requests: Dict[str, Request] = {}
        # Streaming detokenizers of the requests this peer drives, by stream id (see op_detok_open).
        self.detokenizers: Dict[str, Any] = {}
        self.ops: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("op_")
        }

    def handle(self, msg: Dict[str, Any]) -> Dict[str, Any]:
        rid = msg.get("id")
        try:
            op = msg.get("op")
            if op not in self.ops:
                raise bad_request(f"unknown op {op!r}")
            result = self.ops[op](msg)
            return {"id": rid, "ok": True, **result}
        except EngineError as err:
            return {"id": rid, "ok": False, "error": {"code": err.code, "message": err.message}}
        except Exception as err:  # a bug or an MLX failure: report it, keep serving
            log.exception("op %r failed", msg.get("op"))
            return {"id": rid, "ok": False, "error": {"code": "INTERNAL", "message": f"{type(err).__name__}: {err}"}}

    # --- ops -------------------------------------------------------------------------------------

    def op_hello(self, msg):
        gpu = mx.default_device().type == mx.DeviceType.gpu
        return {
            "protocol": PROTOCOL,
            "python": platform.python_version(),
            "mlx": mx.__version__,
            "mlx_lm": importlib.metadata.version("mlx-lm"),
            "backend": "gpu" if gpu else "cpu",
            "blas": blas.active or "bundled",
            "malloc": allocator.active(),
            "sched": sched.active(),
            "pid": os.getpid(),
        }

    def op_convert(self, msg):
        from .gguf_convert import convert_gguf

        quantized = _arg(msg, "quantized", bool, default=False)
        out, converted = convert_gguf(_arg(msg, "gguf", str), _arg(msg, "out_dir", str), quantized)
        return {"path": str(out), "converted": converted}

    def op_download(self, msg):
        from .hf_download import download

        start, end = _arg(msg, "start", int, optional=True), _arg(msg, "end", int, optional=True)
        revision = _arg(msg, "revision", str, optional=True)
        return download(_arg(msg, "repo", str), _arg(msg, "out_dir", str), start, end, revision)

    def op_inspect(self, msg):
        from .inspect_model import inspect_model

        return inspect_model(_arg(msg, "model", str))

    def op_load(self, msg):
        from mlx_lm.utils import load_tokenizer
        from pathlib import Path

        from .shard import Shard

        model, start, end = _arg(msg, "model", str), _arg(msg, "start", int), _arg(msg, "end", int)
        split_head = _arg(msg, "split_head", bool, default=False)
        # Free the previous shard first so memory_bytes is this shard's alone.
        self.shard = self.tokenizer = None
        # Detokenizer streams stay: the origin's requests replay across a re-plan and keep their text.
        self._drop_all()
        gc.collect()
        mx.clear_cache()
        mx.reset_peak_memory()
        shard_rss: Dict[str, int] = {}
        if start == end:
            # No layers (a peer left out of the plan): only the tokenizer, so it can still serve its
            # own API clients by driving requests through the other peers.
            from .inspect_model import layer_count, read_config, text_config

            config = read_config(Path(model))
            text, n_layers = text_config(config), layer_count(config)
            hidden_size = int(text["hidden_size"])
            if not 0 <= start <= n_layers:
                raise bad_request(f"layer range [{start}, {end}) is not within [0, {n_layers})")
            first = last = False
            dtype = str(text.get("torch_dtype", ""))
        else:
            rss_before = rss_bytes()
            self.shard = Shard(model, start, end, split_head)
            # Measured before the tokenizer loads: the shard's own cost, for the memory budget.
            shard_rss = {"rss_before_bytes": rss_before, "peak_rss_bytes": peak_rss_bytes()}
            n_layers, hidden_size = self.shard.n_layers, self.shard.hidden_size
            first, last, dtype = self.shard.first, self.shard.last, dtype_name(self.shard.dtype)
        self.tokenizer = load_tokenizer(Path(model))
        return {
            **shard_rss,
            "memory_bytes": mx.get_active_memory(),
            "n_layers": n_layers,
            "first": first,
            "last": last,
            "dtype": dtype,
            "hidden_size": hidden_size,
            # The part of the head's vocabulary this stage computes, when the head is split (shard.py).
            "vocab_part": list(self.shard.vocab_part) if self.shard is not None and self.shard.vocab_part else None,
        }

    def _loaded(self):
        if self.shard is None:
            raise EngineError("NOT_LOADED", "no model is loaded (send load first)")
        return self.shard

    def _forward_args(self, msg) -> Dict[str, Any]:
        """A forward's arguments, checked: tokens on the first stage, hidden states after it."""
        shard = self._loaded()
        args = {
            "request": _arg(msg, "request", str),
            "offset": _arg(msg, "offset", int),
            "sample": _arg(msg, "sample", bool, default=False),
            "logits": _arg(msg, "logits", bool, default=False),
            "tokens": None,
            "hidden": None,
            "head": None,
            "finish": _arg(msg, "finish", bool, default=False),
            "eos": _arg(msg, "eos", list, default=[]),
        }
        if shard.first and msg.get("head") is not None:
            args["head"] = self._head_arg(_arg(msg, "head", dict))
        elif shard.first:
            tokens = args["tokens"] = _arg(msg, "tokens", list)
            if not tokens or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
                raise bad_request("tokens must be a non-empty list of ints")
            if max(tokens) >= shard.model.args.vocab_size or min(tokens) < 0:
                raise bad_request("a token id is outside the vocabulary")
        else:
            hidden = args["hidden"] = decode_tensor(_arg(msg, "hidden", dict))
            if hidden.ndim != 3 or hidden.shape[0] != 1 or hidden.shape[2] != shard.hidden_size or hidden.shape[1] == 0:
                raise bad_request(f"hidden must be [1, T, {shard.hidden_size}], got {list(hidden.shape)}")
        sampling = _arg(msg, "sampling", dict, default={})
        args["temperature"] = _arg(sampling, "temperature", float, default=0.0)
        args["top_p"] = _arg(sampling, "top_p", float, default=1.0)
        args["seed"] = _arg(sampling, "seed", int, optional=True)
        if args["temperature"] < 0 or not (0 < args["top_p"] <= 1):
            raise bad_request("sampling needs temperature >= 0 and 0 < top_p <= 1")
        state = self.requests.get(args["request"])
        expected = state.offset if state else 0
        if args["offset"] != expected:
            raise EngineError("BAD_OFFSET", f"request {args['request']!r} is at offset {expected}, not {args['offset']}")
        return args

    def _head_arg(self, head: Dict[str, Any]) -> Dict[str, Any]:
        """The last stage's part of a step's head (its `head` reply), for the first stage to finish."""
        shard = self.shard
        if shard.vocab_part is None or not shard.first:
            raise bad_request("this stage holds no part of a split head (load it with split_head)")
        hidden = decode_tensor(_arg(head, "hidden", dict))
        if list(hidden.shape) != [1, 1, shard.hidden_size]:
            raise bad_request(f"head hidden must be [1, 1, {shard.hidden_size}], got {list(hidden.shape)}")
        lo = shard.vocab_part[1]
        top = _arg(head, "top", list)
        if not top or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], int) and e[0] >= lo and isinstance(e[1], (int, float)) for e in top
        ):
            raise bad_request("head top must be a non-empty list of [token id, logit] of the other part")
        logits = head.get("logits")
        logits = decode_tensor(logits) if logits is not None else None
        if logits is not None and (logits.ndim != 2 or logits.shape[0] != 1 or lo + logits.shape[1] <= max(e[0] for e in top)):
            raise bad_request("head logits must be one row of the other part's logits")
        return {"hidden": hidden, "top": top, "logits": logits}

    def _finish_token(self, state: Request, args, part: mx.array) -> int:
        """The token of a step whose head was split: this stage's part of the logits ([1, n]) with the
        last stage's (its near-top entries for greedy, its whole part otherwise)."""
        from .sampling import RequestSampler, greedy_split

        head = args["head"]
        if args["temperature"] == 0:
            return greedy_split(part, head["top"])
        if head["logits"] is None:
            raise bad_request("sampling with temperature > 0 needs the other part's logits")
        if state.sampler is None:
            state.sampler = RequestSampler(state.seed)
        full = mx.concatenate([part, head["logits"].astype(part.dtype)], axis=-1)
        return state.sampler.sample(full, args["temperature"], args["top_p"])

    def _finish_tokens(self, states: List[Request], batch: List[Any]) -> List[Optional[int]]:
        """Each split-head item's token (None for the others), one product for all of them; an item
        whose token ends its request (EOS, or `finish`) runs no layers: its `tokens` stay None."""
        heads = [i for i, (_, args) in enumerate(batch) if args["head"] is not None]
        tokens: List[Optional[int]] = [None] * len(batch)
        if not heads:
            return tokens
        hidden = mx.concatenate([batch[i][1]["head"]["hidden"] for i in heads], axis=0)
        parts = self.shard.part_logits(hidden)
        mx.eval(parts)
        for row, i in enumerate(heads):
            args = batch[i][1]
            token = tokens[i] = self._finish_token(states[i], args, parts[row : row + 1])
            if not args["finish"] and token not in args["eos"]:
                args["tokens"] = [token]
        return tokens

    def _state(self, args) -> Request:
        state = self.requests.get(args["request"])
        if state is None:
            state = self.requests[args["request"]] = Request(self.shard.make_cache(), args["seed"])
        return state

    def _forward_reply(self, state: Request, args, out) -> Dict[str, Any]:
        if not self.shard.last:
            return {"hidden": encode_tensor(out)}
        if not args["sample"]:
            return {}
        if isinstance(out, tuple):
            # A split head: the normed hidden state and this part's top logit, for the first stage to finish.
            from .sampling import top_entry

            hidden, part = out
            head: Dict[str, Any] = {"hidden": _as_bytes(encode_tensor(hidden)), "top": top_entry(part, self.shard.vocab_part[0])}
            if args["temperature"] != 0:
                head["logits"] = _as_bytes(encode_tensor(part))
            return {"head": head}
        if state.sampler is None:
            from .sampling import RequestSampler

            state.sampler = RequestSampler(state.seed)
        reply: Dict[str, Any] = {"token": state.sampler.sample(out, args["temperature"], args["top_p"])}
        if args["logits"]:
            reply["logits"] = encode_tensor(out)
        return reply

    def op_forward(self, msg):
        self._loaded()
        return self._forward_known(self._forward_args(msg))

    def _forward_known(self, args) -> Dict[str, Any]:
        """One forward of checked arguments (the first stage finishes a split head's token first)."""
        shard = self.shard
        state = self._state(args)
        token = self._finish_tokens([state], [(0, args)])[0]
        if token is not None and args["tokens"] is None:
            return {"token": token}
        try:
            cache = state.own_cache()
            out = shard.forward(cache, args["tokens"], args["hidden"])
            if shard.last and not args["sample"]:
                # A prompt chunk nobody samples: only the caches matter, as in mlx_lm's prefill, so the
                # head (and the last layer's MLP) are never computed.
                mx.eval([c.state for c in cache])
            else:
                mx.eval(out)
        except Exception:
            # The cache may be half-updated: drop the request rather than continue from a wrong state.
            self._drop(args["request"])
            raise
        state.offset += len(args["tokens"]) if args["tokens"] is not None else args["hidden"].shape[1]
        reply = self._forward_reply(state, args, out)
        return reply if token is None else {**reply, "token": token}

    def op_forward_batch(self, msg):
        """One-token steps of several requests as one batched forward. Each item is a forward's
        arguments; each result is that forward's reply or {"error": ...}: a bad item fails alone."""
        shard = self._loaded()
        items = _arg(msg, "items", list)
        results: List[Dict[str, Any]] = [{} for _ in items]
        batch = []
        for i, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise bad_request("each item must be a map of forward arguments")
                args = self._forward_args(item)
                steps = 1 if args["head"] is not None else len(args["tokens"]) if args["tokens"] is not None else args["hidden"].shape[1]
                if steps != 1 or any(a["request"] == args["request"] for _, a in batch):
                    raise bad_request("a batched forward takes one token per request, each request once")
                batch.append((i, args))
            except EngineError as err:
                results[i] = {"error": {"code": err.code, "message": err.message}}
        states = [self._state(args) for _, args in batch]
        finished = self._finish_tokens(states, batch)
        for (i, args), token in zip(batch, finished):
            if token is not None:
                results[i] = {"token": token}
        # Items whose token ended their request run no layers.
        keep = [k for k, (_, args) in enumerate(batch) if args["head"] is None or args["tokens"] is not None]
        batch, states = [batch[k] for k in keep], [states[k] for k in keep]
        for (_, args) in batch:
            args["head"] = None  # its token is known: from here on it is a one-token step
        if len(batch) > 1 and can_batch(shard.make_cache()):
            tokens = [args["tokens"][0] for _, args in batch] if shard.first else None
            hidden = None if shard.first else [args["hidden"] for _, args in batch]
            try:
                outs = forward_rows(shard, states, tokens, hidden)
            except Exception:
                # The batch cache may be half-updated: drop these requests, as op_forward does one.
                for state in states:
                    if state.group is not None:
                        state.group.discard()
                for _, args in batch:
                    self._drop(args["request"])
                raise
            for (i, args), state, out in zip(batch, states, outs):
                results[i] = {**results[i], **_bytes_tensors(self._forward_reply(state, args, out))}
        else:
            for i, args in batch:
                try:
                    results[i] = {**results[i], **_bytes_tensors(self._forward_known(args))}
                except EngineError as err:
                    results[i] = {"error": {"code": err.code, "message": err.message}}
        return {"results": results}

    def _drop(self, request: str) -> bool:
        state = self.requests.pop(request, None)
        if state is not None:
            state.release()
        return state is not None

    def _drop_all(self) -> None:
        for request in list(self.requests):
            self._drop(request)

    def op_release(self, msg):
        return {"released": self._drop(_arg(msg, "request", str))}

    def _tokenizer(self):
        if self.tokenizer is None:
            raise EngineError("NOT_LOADED", "no model is loaded (send load first)")
        return self.tokenizer

    def op_tokenize(self, msg):
        tok = self._tokenizer()
        text, messages = _arg(msg, "text", str, optional=True), _arg(msg, "messages", list, optional=True)
        add_bos = _arg(msg, "add_bos", bool, optional=True)
        if (text is None) == (messages is None):
            raise bad_request("tokenize needs exactly one of text or messages")
        if messages is not None:
            if not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages):
                raise bad_request("messages must be a list of {role, content} strings")
            if not getattr(tok, "chat_template", None):
                raise EngineError("NO_CHAT_TEMPLATE", "this model's tokenizer has no chat template")
            # The template writes any special tokens itself, so encode without adding more.
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return {"tokens": list(tok.encode(text, add_special_tokens=False))}
        tokens = list(tok.encode(text, add_special_tokens=add_bos is not False))
        bos = tok.bos_token_id
        if add_bos and bos is not None and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return {"tokens": tokens}

    def op_decode(self, msg):
        tokens = _token_ids(msg)
        skip = _arg(msg, "skip_special", bool, default=False)
        return {"text": self._tokenizer().decode(tokens, skip_special_tokens=skip)}

    def op_echo(self, msg):
        """The engine hop's benchmark: a tensor in and back out through forward's decode and encode."""
        hidden = decode_tensor(_arg(msg, "hidden", dict))
        mx.eval(hidden)
        return {"hidden": encode_tensor(hidden)}

    # --- streaming detokenizing: each new token costs the same, however long the text already is ---

    def op_detok_open(self, msg):
        self.detokenizers[_arg(msg, "stream", str)] = self._tokenizer().detokenizer
        return {}

    def op_detok_add(self, msg):
        """Adds tokens; returns the text that became final (a partial character or word waits)."""
        detok = self._detokenizer(msg)
        vocab = len(self._tokenizer()._tokenizer)
        tokens = _token_ids(msg)
        if any(t >= vocab for t in tokens):
            raise bad_request(f"token ids must be below the vocabulary size {vocab}")
        for t in tokens:
            detok.add_token(t)
        return {"text": detok.last_segment}

    def op_detok_close(self, msg):
        """Flushes what was held back and forgets the stream."""
        detok = self._detokenizer(msg)
        del self.detokenizers[msg["stream"]]
        detok.finalize()
        return {"text": detok.last_segment}

    def op_detok_spec(self, msg):
        """The streaming detokenizer's rules and its token map, so that the origin peer can detokenize
        without a round trip per token (peer/detokenizer.ts follows mlx-lm's rules exactly). `naive`
        (mlx-lm decodes the whole line with the tokenizer) has no map: those peers use detok_add."""
        from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer, SPMStreamingDetokenizer

        detok = self._tokenizer().detokenizer
        if type(detok) is SPMStreamingDetokenizer:
            return {"kind": "spm", "trim_space": bool(detok.trim_space), "pieces": list(detok.tokenmap)}
        if type(detok) is BPEStreamingDetokenizer:
            return {"kind": "bpe", "pieces": [p if isinstance(p, str) else "" for p in detok.tokenmap]}
        return {"kind": "naive"}

    def _detokenizer(self, msg):
        stream = _arg(msg, "stream", str)
        if stream not in self.detokenizers:
            raise EngineError("NOT_FOUND", f"no detokenizer stream {stream!r} (open it first)")
        return self.detokenizers[stream]

    def op_stats(self, msg):
        return {
            "active_memory": mx.get_active_memory(),
            "peak_memory": mx.get_peak_memory(),
            "peak_rss_bytes": peak_rss_bytes(),
            "huge_pages_bytes": huge_pages_bytes(),
            "requests": len(self.requests),
            "detokenizers": len(self.detokenizers),
        }

    def op_shutdown(self, msg):
        return {}


def serve(stdin: BinaryIO, stdout: BinaryIO, engine: Optional[Engine] = None) -> int:
    """Serve until EOF or shutdown (0), or a broken stream (2). Returns the exit code."""
    engine = engine or Engine()
    while True:
        try:
            msg = read_frame(stdin)
        except FrameError as err:
            log.error("input stream broken: %s", err)
            return 2
        except BadFrame as err:
            write_frame(stdout, {"id": None, "ok": False, "error": {"code": "BAD_FRAME", "message": str(err)}})
            continue
        if msg is None:
            return 0
        started = time.perf_counter()
        reply = engine.handle(msg)
        # Time inside the engine, so the peer can tell compute from framing and transport (/metrics, bench).
        reply["compute_ms"] = (time.perf_counter() - started) * 1000
        log.debug("op %s %.2f ms", msg.get("op"), reply["compute_ms"])
        write_frame(stdout, reply)
        if msg.get("op") == "shutdown":
            return 0
