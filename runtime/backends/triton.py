"""Triton Inference Server backend: the network runs on a server, the pyramid and the merge here.

``Predictor.from_url("127.0.0.1:8000", model="overfeat_net")`` (or ``overfeat infer --backend
triton --url 127.0.0.1:8000``) talks to a network model of a repository from ``overfeat
triton-repo``, over HTTP or gRPC (``protocol``; a ``grpc://`` URL or port 8001 means gRPC).
The model's overfeat metadata comes from its config's ``parameters``, so the client knows the
model it talks to without the file. Needs ``tritonclient[http,grpc]`` (extra ``triton``).
"""

from __future__ import annotations

import numpy as np

from overfeat.errors import BackendError, InputError, ModelError
from overfeat.metadata import INPUT_NAME, ModelMeta

from . import feed_image

PROTOCOLS = ("http", "grpc")
TIMEOUT = 60.0  # seconds a request may take


def split_url(url: str, protocol: str | None = None) -> tuple[str, str]:
    """(``host:port``, protocol) of ``url``: ``http://``/``grpc://`` prefixes, or ``protocol``,
    or port 8001 for gRPC; otherwise HTTP."""
    text = str(url).strip()
    scheme, sep, rest = text.partition("://")
    if sep:
        if scheme not in PROTOCOLS:
            raise InputError(f"`url` {url!r}: expected http://HOST:PORT, grpc://HOST:PORT or HOST:PORT")
        text = rest
    host, _, port = text.rstrip("/").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise InputError(f"`url` {url!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")
    chosen = protocol or (scheme if sep else ("grpc" if port == "8001" else "http"))
    if chosen not in PROTOCOLS:
        raise InputError(f"`protocol` {protocol!r}: expected http or grpc")
    return f"{host}:{port}", chosen


class TritonBackend:
    name = "triton"

    def __init__(self, url: str, model: str = "overfeat_net", protocol: str | None = None, timeout: float = TIMEOUT) -> None:
        address, self.protocol = split_url(url, protocol)
        self.source = f"{self.protocol}://{address}/{model}"
        self.model, self.timeout = model, float(timeout)
        try:
            if self.protocol == "http":
                import tritonclient.http as client
            else:
                import tritonclient.grpc as client
        except ImportError:
            raise BackendError("the triton backend needs tritonclient: pip install 'overfeat[triton]'") from None
        self._client_module = client
        try:
            self.client = client.InferenceServerClient(
                address, **({"network_timeout": self.timeout} if self.protocol == "http" else {})
            )
            live = self.client.is_server_live()
        except Exception as exc:
            raise BackendError(f"no Triton server answers at {self.source.rsplit('/', 1)[0]} ({_first_line(exc)})") from None
        if not live:
            raise BackendError(f"the Triton server at {address} is not live")
        try:
            ready = self.client.is_model_ready(model)
        except Exception:  # the server's own refusal of the name: not ready, said below
            ready = False
        if not ready:
            raise ModelError(
                f"the Triton server at {address} has no ready model {model!r}; is it the network model (NAME_net) of a repository from 'overfeat triton-repo'?"
            )
        config = self.client.get_model_config(model)
        config = config.get("config", config) if isinstance(config, dict) else _as_dict(config)
        props = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items() if k.startswith("overfeat.")}
        if not props:
            raise ModelError(
                f"model {model!r} on {address} carries no overfeat metadata in its config parameters; serve a repository from 'overfeat triton-repo'"
            )
        self.meta = ModelMeta.from_props(props, self.source)
        self._outputs = self.meta.output_names
        names = {o["name"] for o in config.get("output", [])}
        missing = [o for o in self._outputs if o not in names]
        if missing:
            raise ModelError(f"model {model!r} on {address} lacks the outputs {missing} its metadata names")

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = np.ascontiguousarray(feed_image(feeds))
        client = self._client_module
        tensor = client.InferInput(INPUT_NAME, list(image.shape), "FP32")
        tensor.set_data_from_numpy(image)
        wanted = [client.InferRequestedOutput(name) for name in self._outputs]
        try:
            if self.protocol == "grpc":
                result = self.client.infer(self.model, [tensor], outputs=wanted, client_timeout=self.timeout)
            else:
                result = self.client.infer(self.model, [tensor], outputs=wanted)
        except Exception as exc:
            raise BackendError(f"Triton failed on {self.source} with input {list(image.shape)}: {_first_line(exc)}") from None
        return {name: result.as_numpy(name) for name in self._outputs}

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _as_dict(message) -> dict:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(message.config if hasattr(message, "config") else message, preserving_proto_field_name=True)
