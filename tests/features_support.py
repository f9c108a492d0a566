"""Helpers for the feature-pipeline tests: a scriptable OpenAI chat-completions server on
127.0.0.1 and a small real slice of the bundled Last.fm-2K dataset."""

import json
import os
import re
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from recbole_recgoat.features.prompt import prompt_item_ids

# The packaged all-MiniLM-L6-v2 is extracted once per machine into the temp folder (not ~/.cache),
# for this process and the subprocesses the tests start.
os.environ.setdefault("RECBOLE_RECGOAT_CACHE", os.path.join(tempfile.gettempdir(), "recbole_recgoat_test_cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BUNDLED_LASTFM = Path(__file__).resolve().parents[1] / "recbole_recgoat" / "bundled" / "lastfm-2k"
_USER = re.compile(r"User ID: (\S+)")


class FakeChatServer:
    """``POST /v1/chat/completions`` speaking the OpenAI response format, recording every request.

    ``script[user]`` is a list of behaviours used one per request of that user (then ``default``):
    ``ok``, ``500``, ``503``, ``429``, ``401``, ``hang`` (no answer until released; past any client
    timeout), ``malformed`` (200 with a non-json body), ``noanswer`` (200 without ``<answer>``),
    ``placeholder`` (the prompt's own ``<answer> answer here </answer>``).  With ``hold_after=N``
    the server answers N requests, then holds every further one without answering.
    """

    def __init__(self, script=None, default="ok", hold_after=None, delay=0.0):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.default = default
        self.hold_after = hold_after
        self.delay = delay
        self.requests = []  # {"n", "user", "prompt", "model", "behavior", "answered", "held"}
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.answered = 0
        self.served = 0  # requests given an answer (or an error status), decided on arrival
        self._httpd = None

    # -- answers -------------------------------------------------------------------------------
    @staticmethod
    def answer_text(prompt):
        user = _USER.search(prompt).group(1)
        items = prompt_item_ids(prompt)
        return f"User {user} prefers artists like " + ", ".join(items[:12]) + f" ({len(items)} items)."

    def _body(self, model, content):
        return json.dumps({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode("utf-8")

    def handle(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        if handler.path != "/v1/chat/completions":
            return handler.reply(404, b'{"error": "not found"}')
        body = json.loads(raw)
        prompt = body["messages"][-1]["content"]
        user = _USER.search(prompt).group(1)
        with self.lock:
            queue = self.script.get(user)
            behavior = queue.pop(0) if queue else self.default
            if self.hold_after is not None and self.served >= self.hold_after:
                behavior = "hold"
            elif behavior not in ("hang", "hold"):
                self.served += 1
            rec = {"n": len(self.requests), "user": user, "prompt": prompt, "model": body.get("model"),
                   "auth": handler.headers.get("Authorization"), "behavior": behavior, "answered": False,
                   "held": behavior == "hold", "time": time.monotonic(), "body": body}
            self.requests.append(rec)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            handler.counted = True
        try:
            if self.delay:
                time.sleep(self.delay)
            if behavior in ("hang", "hold"):
                self.release.wait(60)
                handler.close_connection = True
                return None
            if behavior in ("500", "503", "429", "401"):
                extra = {"Retry-After": "0"} if behavior in ("503", "429") else {}
                return handler.reply(int(behavior), b'{"error": {"message": "scripted failure"}}', extra)
            if behavior == "malformed":
                return self._ok(handler, rec, b'{"choices": [ this is not json')
            if behavior == "noanswer":
                return self._ok(handler, rec, self._body(body.get("model"), "<think>hmm</think> I like music."))
            if behavior == "placeholder":
                return self._ok(handler, rec, self._body(body.get("model"), "<think>x</think> <answer> answer here </answer>"))
            content = f"<think>The user listens to these artists.</think>\n<answer>{self.answer_text(prompt)}</answer>"
            return self._ok(handler, rec, self._body(body.get("model"), content))
        finally:
            self.leave(handler)

    def leave(self, handler):
        """The request stops being in flight when its answer starts (the client may send the next
        one as soon as it is read), or when the handler gives up."""
        with self.lock:
            if getattr(handler, "counted", False):
                handler.counted = False
                self.in_flight -= 1

    def _ok(self, handler, rec, payload):
        handler.reply(200, payload)
        with self.lock:
            rec["answered"] = True
            self.answered += 1

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's name
                server.handle(self)

            def reply(self, status, payload, headers=None):
                server.leave(self)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def prompts(self, answered_only=False):
        with self.lock:
            return [r["prompt"] for r in self.requests if r["answered"] or not answered_only]


def read_inter(path):
    """``[(user, item)]`` of an atomic .inter file (header skipped)."""
    with open(path, encoding="utf-8") as f:
        next(f)
        return [tuple(line.rstrip("\n").split("\t")[:2]) for line in f if line.strip()]


def small_lastfm(root, n_users=20, mutate_eval=False):
    """A ``<root>/lastfm-2k/`` with the bundled files restricted to users 0..n_users-1.

    ``mutate_eval`` changes the validation and test rows (other items, extra rows; each (user, item)
    pair still once per split) and leaves the training file untouched.
    """
    out = Path(root) / "lastfm-2k"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BUNDLED_LASTFM / "lastfm-2k.item", out / "lastfm-2k.item")
    for split in ("train", "valid", "test"):
        lines = (BUNDLED_LASTFM / f"lastfm-2k.{split}.inter").read_text(encoding="utf-8").splitlines()
        keep = [ln for ln in lines[1:] if int(ln.split("\t")[0]) < n_users]
        if mutate_eval and split != "train":
            changed = []
            for ln in keep:
                u, i, r = ln.split("\t")
                changed.append(f"{u}\t{(int(i) + 7) % 1425}\t{r}")
            extra = [f"{u}\t{(u * 31 + 5) % 1425}\t1" for u in range(n_users)]
            pairs = {tuple(ln.split("\t")[:2]) for ln in changed}  # a pair once per split (the loader refuses repeats)
            keep = changed + [ln for ln in extra if tuple(ln.split("\t")[:2]) not in pairs]
        (out / f"lastfm-2k.{split}.inter").write_text("\n".join([lines[0]] + keep) + "\n", encoding="utf-8")
    return out


def train_items(data_dir):
    """``{user: [items in file order]}`` of the slice's training file."""
    hist = {}
    for u, i in read_inter(Path(data_dir) / "lastfm-2k.train.inter"):
        hist.setdefault(u, []).append(i)
    return hist


def wait_for(predicate, timeout=60.0, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return False


def complete_lines(path):
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        return f.read().count(b"\n")
