"""Notifiers: state-handler factories that post a state change to an HTTP endpoint.

``webhook_notifier(url)`` and ``slack_notifier()`` each return a ``StateHandler`` usable
on tasks and flows (``state_handlers=[...]``)::

    @task(state_handlers=[slack_notifier()])          # posts when the task fails
    def load(path: str) -> int: ...

    Flow("etl", state_handlers=[webhook_notifier("http://127.0.0.1:9000/hook",
                                                 only_states=[Success, Failed])])

Design. A handler runs where the change happens (a worker process for a task's attempt on
loky or Dask: see ``taskloom.handlers``), so a notifier must be picklable (a small class,
not a closure over a socket) and must not hold the task up: the POST runs in a daemon
thread and the handler returns at once, keeping the new state (it returns None). The body
is JSON: ``{"name", "kind" ("task" or "flow"), "old_state", "state", "message"}`` (Slack's
webhooks read ``text``, which ``slack_notifier`` adds). Only the standard library is used
(``urllib.request``). A post that fails (refused, timed out, a non-2xx answer) is logged as
a warning on ``taskloom.notifications``, never a failed task. A notifier does not send the
state's result (it may hold data or secrets), only its class and message.

Slack's webhook URL is a secret: ``slack_notifier`` reads it when it posts, from the
context's ``secrets`` (``Flow.run(context={"secrets": {"SLACK_WEBHOOK_URL": ...}})``), else
the environment ``TASKLOOM_SECRETS_SLACK_WEBHOOK_URL``, else Prefect's
``PREFECT__CONTEXT__SECRETS__SLACK_WEBHOOK_URL``. The URL never appears in a message.

Layer: a definition (it uses the context, the states and the ``StateHandler`` protocol).
Because the post is in a daemon thread, a process that exits at once (a short script on
the local executor) may end before the post is done; ``Notifier.wait()`` waits for the
posts this process started.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Iterable
from typing import Any

from ._secrets import lookup
from .context import current
from .states import Failed, State

__all__ = ["Notifier", "slack_notifier", "webhook_notifier"]

log = logging.getLogger("taskloom.notifications")

#: The posts this process started and has not seen end (``Notifier.wait``).
_posts: set[threading.Thread] = set()
_posts_lock = threading.Lock()


def _kind(obj: object) -> str:
    from .task import Task  # same layer; imported here only to keep the module light

    return "task" if isinstance(obj, Task) else "flow"


def _post(url: str, body: bytes, timeout: float, what: str) -> None:
    """POST ``body`` to ``url``; log a failure as a warning (``what`` names the notifier,
    not the URL, which may be a secret)."""
    try:
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except Exception as error:
        log.warning("%s: the notification could not be posted: %r", what, error)
    finally:
        with _posts_lock:
            _posts.discard(threading.current_thread())


class Notifier:
    """A state handler that posts matching state changes as JSON (see the module docstring).

    Args:
        url: where to post; None to read a secret named ``secret`` when posting.
        only_states: post only when the new state is an instance of one of these classes
            (None: every change).
        timeout: seconds a post may take.
        secret: the secret holding the URL, when ``url`` is None.
        slack: add Slack's ``text`` field to the body.
    """

    def __init__(
        self,
        url: str | None,
        only_states: Iterable[type[State[Any]]] | None = None,
        timeout: float = 5.0,
        *,
        secret: str | None = None,
        slack: bool = False,
    ) -> None:
        if url is None and not secret:
            raise ValueError("a notifier needs a url or the name of a secret holding one")
        only: tuple[type[State[Any]], ...] | None = None
        if only_states is not None:
            only = tuple(only_states)
            classes: tuple[object, ...] = only
            bad = [s for s in classes if not (isinstance(s, type) and issubclass(s, State))]
            if bad:
                raise TypeError(f"only_states must be State classes, e.g. [Failed], not {bad!r}")
        checked: object = timeout
        if isinstance(checked, bool) or not isinstance(checked, (int, float)) or checked <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.url = url
        self.only_states = only
        self.timeout = float(timeout)
        self.secret = secret
        self.slack = slack
        self.__qualname__ = "slack_notifier" if slack else "webhook_notifier"

    def __repr__(self) -> str:
        where = f"secret {self.secret!r}" if self.url is None else repr(self.url)
        return f"<{self.__qualname__} to {where}>"

    def _url(self) -> str | None:
        if self.url is not None:
            return self.url
        assert self.secret is not None
        url = lookup(self.secret)
        return None if url is None else str(url)

    def __call__(self, obj: Any, old_state: State[Any], new_state: State[Any], /) -> None:
        """Post the change if it matches ``only_states``, in a daemon thread; keep the state."""
        if self.only_states is not None and not isinstance(new_state, self.only_states):
            return None
        name = str(getattr(obj, "name", obj))
        index = current().get("map_index")
        if index is not None and _kind(obj) == "task":
            name = f"{name}[{index}]"
        url = self._url()
        if not url:
            log.warning(
                "%s: no URL: set the secret %r (context secrets, or TASKLOOM_SECRETS_%s)",
                self.__qualname__, self.secret, self.secret,
            )
            return None
        payload: dict[str, Any] = {
            "name": name,
            "kind": _kind(obj),
            "old_state": type(old_state).__name__,
            "state": type(new_state).__name__,
            "message": new_state.message,
        }
        if self.slack:
            payload["text"] = f"{payload['kind']} {name!r} is now {payload['state']}: {new_state.message}"
        body = json.dumps(payload).encode("utf-8")
        thread = threading.Thread(
            target=_post, args=(url, body, self.timeout, self.__qualname__), daemon=True,
            name="taskloom-notify",
        )
        with _posts_lock:
            _posts.add(thread)
        thread.start()
        return None

    @staticmethod
    def wait(timeout: float | None = None) -> None:
        """Wait for the posts this process started (in any notifier) to end."""
        with _posts_lock:
            pending = list(_posts)
        for thread in pending:
            thread.join(timeout)


def webhook_notifier(
    url: str, only_states: Iterable[type[State[Any]]] | None = None, timeout: float = 5.0
) -> Notifier:
    """A state handler posting each change (or those whose new state is one of
    ``only_states``) to ``url`` as JSON, in a daemon thread; a failed post is a warning."""
    checked: object = url
    if not isinstance(checked, str) or not checked.startswith(("http://", "https://")):
        raise ValueError(f"webhook_notifier needs an http(s) URL, not {url!r}")
    return Notifier(url, only_states, timeout)


def slack_notifier(
    only_states: Iterable[type[State[Any]]] | None = (Failed,),
    webhook_secret: str = "SLACK_WEBHOOK_URL",
    timeout: float = 5.0,
) -> Notifier:
    """A state handler posting to the Slack webhook whose URL is the secret
    ``webhook_secret`` (read when posting: see the module docstring), by default when the
    new state is ``Failed``."""
    return Notifier(None, only_states, timeout, secret=webhook_secret, slack=True)
