"""Who answers the prompts: an OpenAI-compatible chat server, or a metadata summary (not an LLM).

* :class:`OpenAIChatBackend` posts each prompt to ``<base_url>/chat/completions`` (vLLM,
  llama.cpp ``llama-server``, Ollama, LM Studio, hosted APIs) with a per-request timeout, retries
  with exponential backoff (5xx, 408/409/429, timeouts, connection errors, malformed bodies and
  answers without a usable ``<answer>``), and a shared rate limit.  401/403/404 stop the run
  (wrong key, URL or model); other 4xx fail that user without retrying.  A dead server stops the
  run within seconds instead of being retried for every user: a refused connection at once, other
  transport errors (reset, unreachable, DNS) after ``max_connection_errors`` in a row over all
  users (any answer from the server, an error status included, resets the count); timeouts and
  5xx keep their retries.
* :class:`MetadataSummaryBackend` asks nobody: it writes a deterministic structured summary of the
  user's training items' metadata (most frequent attribute values, item names) in the same
  ``<think>..</think><answer>..</answer>`` shape.  It is NOT an LLM; it exists so that the
  pipeline and RecGOAT's user branch run without a server.
"""

import hashlib
import http.client
import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass

from recbole_recgoat.features.prompt import extract_answer

USER_AGENT = "recbole-recgoat-features/1"
_MAX_ERROR_BYTES = 2048


class FatalBackendError(RuntimeError):
    """A problem no retry can fix (authentication, unknown model or URL): the run stops."""


@dataclass
class ProfileRequest:
    """One user's question: the prompt and the items it was built from."""

    user: str
    prompt: str
    items: list  # [item id] (training items, in the prompt's order)
    table: object = None  # ItemTable, for backends that read metadata


@dataclass
class Outcome:
    """The result for one user: ``ok`` with the ``answer`` to embed, or a failure ``reason``."""

    ok: bool
    answer: str = None
    content: str = None
    reason: str = None
    attempts: int = 1


class RateLimiter:
    """At most ``rate`` acquisitions per second over all threads (evenly spaced); 0/None = no limit."""

    def __init__(self, rate=None, clock=time.monotonic, sleep=time.sleep):
        self.interval = 1.0 / float(rate) if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self):
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


class _Retryable(Exception):
    def __init__(self, reason, retry_after=None, content=None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.content = content


class OpenAIChatBackend:
    """Chat-completions client (stdlib only) for any OpenAI-compatible server.

    Args:
        base_url (str): e.g. ``http://127.0.0.1:8000/v1`` (``/chat/completions`` is appended
            unless the URL already ends with it).
        model (str): the server's model name.
        api_key (str | None): sent as ``Authorization: Bearer``; local servers need none.
        timeout (float): seconds per request (connect + whole response).
        max_retries (int): retries after the first attempt.
        backoff (float): first retry delay in seconds; doubles each retry (capped by
            ``backoff_max``), with a deterministic jitter; ``Retry-After`` is honoured.
        rate_limit (float | None): requests per second over all threads.
        temperature, max_tokens: sampling parameters (part of the cache key).
        extra_body (dict | None): more request fields (``top_p``, ``seed``,
            ``chat_template_kwargs``...), also part of the cache key.
        max_connection_errors (int): transport errors in a row (over all users) that stop the
            run; 0 = never (a refused connection always stops it).
    """

    name = "openai"

    def __init__(self, base_url, model, api_key=None, timeout=120.0, max_retries=3, backoff=1.0, backoff_max=30.0,
                 rate_limit=None, temperature=0.0, max_tokens=2048, extra_body=None, sleep=None,
                 max_connection_errors=5):
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body or {})
        self.stop = threading.Event()  # set by the pipeline when the run ends early: no new attempts
        self._sleep = sleep or self.stop.wait
        self.limiter = RateLimiter(rate_limit, sleep=self._sleep)
        self._opener = urllib.request.build_opener()
        self.max_connection_errors = int(max_connection_errors)
        self._transport_errors = 0  # in a row, over all threads
        self._count_lock = threading.Lock()

    def identity(self):
        """What decides an answer besides the prompt (the cache key includes it)."""
        params = {"temperature": self.temperature, "max_tokens": self.max_tokens, **self.extra_body}
        return {"backend": "openai-chat", "model": self.model, "params": params}

    def describe(self):
        return f"OpenAI-compatible chat server {self.url}, model {self.model}"

    def payload(self, prompt):
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}]}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        body.update(self.extra_body)
        return json.dumps(body).encode("utf-8")

    def _delay(self, key, attempt, retry_after):
        base = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        jitter = random.Random(f"{key}:{attempt}").uniform(0.0, 0.25 * base)
        delay = base + jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def ask(self, request):
        """Ask for one user; returns an :class:`Outcome` (raises :class:`FatalBackendError`)."""
        body = self.payload(request.prompt)
        reason, content, retry_after = None, None, None
        attempts = 0
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self._delay(request.user, attempt, retry_after))
            if self.stop.is_set():
                return Outcome(False, content=content, reason="run stopped", attempts=attempts)
            attempts += 1
            self.limiter.acquire()
            try:
                text = self._post(body)
                answer_content = self._content(text)
                answer, why = extract_answer(answer_content)
                if answer is None:
                    raise _Retryable(why, content=answer_content)
                return Outcome(True, answer=answer, content=answer_content, attempts=attempts)
            except _Retryable as exc:
                reason, retry_after = exc.reason, exc.retry_after
                content = exc.content if exc.content is not None else content
            except _NoRetry as exc:
                return Outcome(False, content=exc.content, reason=exc.reason, attempts=attempts)
        return Outcome(False, content=content, reason=f"{reason} (after {attempts} attempts)", attempts=attempts)

    # -- HTTP --------------------------------------------------------------------------------
    def _post(self, body):
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        deadline = time.monotonic() + self.timeout
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                self._server_answered()
                return self._read(resp, deadline).decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            self._server_answered()
            status = exc.code
            try:
                detail = exc.read(_MAX_ERROR_BYTES).decode("utf-8", errors="replace")
            except Exception:  # noqa: BLE001 - the body of an error is best effort
                detail = ""
            detail = " ".join(detail.split())[:300]
            if status in (401, 403, 404):
                raise FatalBackendError(
                    f"{self.url}: HTTP {status} ({detail or exc.reason}); check --base-url, --llm-model "
                    "and the API key (--api-key-env)"
                ) from None
            if status in (408, 409, 429) or status >= 500:
                raise _Retryable(f"HTTP {status}", retry_after=_retry_after(exc.headers)) from None
            raise _NoRetry(f"HTTP {status}: {detail or exc.reason}") from None
        except (socket.timeout, TimeoutError):
            raise _Retryable(f"timeout after {self.timeout:g}s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                raise _Retryable(f"timeout after {self.timeout:g}s") from None
            self._transport_error(exc.reason)
            raise _Retryable(f"connection error ({exc.reason})") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            self._transport_error(exc)
            raise _Retryable(f"connection error ({exc.__class__.__name__})") from None

    def _server_answered(self):
        with self._count_lock:
            self._transport_errors = 0

    def _transport_error(self, exc):
        """Count a transport error; raise :class:`FatalBackendError` for a refused connection or
        when ``max_connection_errors`` happened in a row."""
        if isinstance(exc, ConnectionRefusedError):
            raise FatalBackendError(f"{self.url}: connection refused (no server listening); expected a running "
                                    "OpenAI-compatible server at --base-url")
        with self._count_lock:
            self._transport_errors += 1
            count = self._transport_errors
        if self.max_connection_errors and count >= self.max_connection_errors:
            raise FatalBackendError(f"{self.url}: {count} connection errors in a row (last: {exc}); expected a reachable "
                                    "server at --base-url (--max-connection-errors sets the limit)")

    def _read(self, resp, deadline):
        chunks = []
        while True:
            if time.monotonic() > deadline:
                raise _Retryable(f"timeout after {self.timeout:g}s")
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    @staticmethod
    def _content(text):
        try:
            data = json.loads(text)
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable(f"malformed response ({' '.join(text.split())[:80]!r})") from None
        if not isinstance(content, str):
            raise _Retryable("malformed response (message.content is not text)")
        return content


class _NoRetry(Exception):
    def __init__(self, reason, content=None):
        super().__init__(reason)
        self.reason = reason
        self.content = content


def _retry_after(headers):
    try:
        return float(headers.get("Retry-After")) if headers and headers.get("Retry-After") else None
    except (TypeError, ValueError):
        return None


class MetadataSummaryBackend:
    """Deterministic structured summary of the user's training items' metadata. NOT an LLM.

    For each summary attribute of the dataset's recipe (tags, genres, brand, ...) it counts in how
    many of the user's training items each value occurs and lists the ``top_k`` most frequent
    (ties by value), then names up to ``top_k`` items.  The text has the prompt's output shape,
    ``<think>`` (how it was made) + ``<answer>`` (the summary, the part that is embedded).
    """

    name = "offline"
    VERSION = 1

    def __init__(self, recipe):
        self.recipe = recipe

    def identity(self):
        return {"backend": "metadata-summary", "model": f"metadata-summary-v{self.VERSION}", "params": self.recipe.summary_params()}

    def describe(self):
        return "MetadataSummaryBackend (deterministic metadata summary, not an LLM)"

    def summarize(self, items, table):
        """The ``<answer>`` text for a list of item ids."""
        n = len(items)
        if n == 0:
            return "No training interactions: no preference evidence."
        top_k = self.recipe.summary_top_k
        lines = [f"1. Common attributes across the user's {n} training items"]
        leading = []
        for name in self.recipe.summary_attributes:
            counts = Counter()
            for iid in items:
                counts.update(table.attribute_values(iid).get(name, []))
            if not counts:
                continue
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
            lines.append(f"- {name}: " + ", ".join(f"{v} ({c} of {n})" for v, c in top))
            leading.append(f"{name} " + ", ".join(v for v, _ in top[:5]))
        lines.append("2. Preference summary")
        if leading:
            lines.append("- Most frequent " + "; ".join(leading) + ".")
        titles = [t for t in (table.title(iid) for iid in items) if t]
        if titles:
            more = f" and {len(titles) - top_k} more" if len(titles) > top_k else ""
            lines.append("- Items: " + ", ".join(titles[:top_k]) + more + ".")
        return "\n".join(lines)

    def ask(self, request):
        answer = self.summarize(request.items, request.table)
        digest = hashlib.sha256(answer.encode("utf-8")).hexdigest()[:12]
        content = (
            f"<think>MetadataSummaryBackend v{self.VERSION}: counted attribute values over {len(request.items)} training "
            f"items; deterministic, not an LLM (summary {digest}).</think>\n<answer>\n{answer}\n</answer>"
        )
        answer_text, why = extract_answer(content)
        if answer_text is None:  # cannot happen for a well-formed summary; never embed it silently
            return Outcome(False, content=content, reason=why)
        return Outcome(True, answer=answer_text, content=content)
