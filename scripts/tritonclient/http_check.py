"""Calls Muon Serve's v2 API with Triton's own Python HTTP client (tritonclient 2.73) and prints what it got.

Usage: python http_check.py [URL]   (default http://localhost:8080; see README.md in this folder for the venv)
Exits 1 when a call that should work fails, or a call that should fail does not.
"""

import gzip
import json
import sys
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

MODEL = "text-orientation"
failures = []


def show(title, value):
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    print(f"{title}: {text if len(text) <= 1500 else text[:1500] + ' ...'}")


def check(title, ok, detail=""):
    print(f"  {'ok' if ok else 'FAILED'}: {title}{' (' + detail + ')' if detail else ''}")
    if not ok:
        failures.append(title)


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:8080"
    if "://" not in url:
        url = "http://" + url
    client = httpclient.InferenceServerClient(url=url.split("://", 1)[-1])  # host:port, no scheme

    show("is_server_live", client.is_server_live())
    show("is_server_ready", client.is_server_ready())
    server = client.get_server_metadata()
    show("get_server_metadata", server)
    for ext in ("binary_tensor_data", "classification", "model_configuration", "statistics"):
        check(f"extension {ext} listed", ext in server["extensions"])

    meta = client.get_model_metadata(MODEL)
    show("get_model_metadata", meta)
    config = client.get_model_config(MODEL)
    show("get_model_config", config)
    check("config names the model", config["name"] == MODEL)
    out = meta["outputs"][0]["name"]

    x = np.random.default_rng(0).random((1, 3, 48, 192), dtype=np.float32)

    def inputs(binary):
        i = httpclient.InferInput("x", list(x.shape), "FP32")
        i.set_data_from_numpy(x, binary_data=binary)
        return [i]

    binary = client.infer(MODEL, inputs(True), outputs=[httpclient.InferRequestedOutput(out, binary_data=True)])
    scores = binary.as_numpy(out)
    show("infer (binary in and out)", {"shape": list(scores.shape), "scores": scores.tolist()})
    as_json = client.infer(MODEL, inputs(False), outputs=[httpclient.InferRequestedOutput(out, binary_data=False)])
    show("infer (JSON in and out)", as_json.get_response())
    check("JSON scores equal binary scores", np.allclose(as_json.as_numpy(out), scores, atol=1e-6))

    top = client.infer(MODEL, inputs(True), outputs=[httpclient.InferRequestedOutput(out, class_count=2)])
    classes = top.as_numpy(out)
    show("infer class_count=2", {"shape": list(classes.shape), "classes": [c.decode() for c in classes.ravel()]})
    best = int(np.argmax(scores[0]))
    check("best class first", classes.ravel()[0].decode().split(":")[1] == str(best))
    # more classes than the output has: all of them, as Triton answers
    every = client.infer(MODEL, inputs(True), outputs=[httpclient.InferRequestedOutput(out, class_count=3)])
    show("infer class_count=3 (2 classes)", {"shape": list(every.as_numpy(out).shape)})
    check("a count over the classes gets them all", list(every.as_numpy(out).shape) == [1, 2])

    for algorithm in ("gzip", "deflate"):
        r = client.infer(
            MODEL,
            inputs(True),
            outputs=[httpclient.InferRequestedOutput(out, binary_data=True)],
            request_compression_algorithm=algorithm,
            response_compression_algorithm=algorithm,
        )
        label = f"infer, request {algorithm} (response {algorithm} asked for; under 1 KiB it comes as it is)"
        show(label, {"scores": r.as_numpy(out).tolist()})
        check(f"{algorithm} scores equal plain scores", np.allclose(r.as_numpy(out), scores, atol=1e-6))

    # an answer worth compressing (the server sends answers under 1 KiB as they are): the VAD's 256-float state
    vad = [
        httpclient.InferInput("input", [1, 576], "FP32"),
        httpclient.InferInput("state", [2, 1, 128], "FP32"),
        httpclient.InferInput("sr", [], "INT64"),
    ]
    vad[0].set_data_from_numpy(np.full((1, 576), 0.01, dtype=np.float32), binary_data=False)
    vad[1].set_data_from_numpy(np.zeros((2, 1, 128), dtype=np.float32), binary_data=False)
    vad[2].set_data_from_numpy(np.array(16000, dtype=np.int64), binary_data=False)
    wanted = [httpclient.InferRequestedOutput(n, binary_data=False) for n in ("output", "stateN")]
    vad_plain = client.infer("voice-activity", vad, outputs=wanted)
    vad_gzip = client.infer("voice-activity", vad, outputs=wanted, response_compression_algorithm="gzip")
    show("infer voice-activity, response gzip", {"output": vad_gzip.as_numpy("output").tolist()})
    check("gzip answer equals the plain one", np.array_equal(vad_gzip.as_numpy("stateN"), vad_plain.as_numpy("stateN")))
    # tritonclient hides the headers: the same request once more with urllib, to see that it came compressed
    body = json.dumps(
        {"inputs": [t._get_tensor() for t in vad], "outputs": [o._get_tensor() for o in wanted]}
    ).encode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v2/models/voice-activity/infer",
        data=body,
        headers={"content-type": "application/json", "accept-encoding": "gzip"},
    )
    with urllib.request.urlopen(request) as response:
        raw = response.read()
        encoding = response.headers.get("content-encoding")
    show("the same with urllib", {"content-encoding": encoding, "bytes": len(raw), "inflated": len(gzip.decompress(raw))})
    check("the answer came gzipped", encoding == "gzip")

    one = client.get_inference_statistics(MODEL)
    show("get_inference_statistics (one model)", one)
    s = one["model_stats"][0]
    check("statistics count the inferences", s["inference_count"] >= 5, f"inference_count {s['inference_count']}")
    every = client.get_inference_statistics()
    show(
        "get_inference_statistics (all)",
        [(m["name"], m["version"], m["inference_count"], m["execution_count"]) for m in every["model_stats"]],
    )

    def fp16_input():
        i = httpclient.InferInput("x", list(x.shape), "FP16")
        i.set_data_from_numpy(x.astype(np.float16), binary_data=True)
        return i

    for title, call in (
        ("get_model_config of an unknown model", lambda: client.get_model_config("no-such-model")),
        ("infer with the wrong datatype (FP16 for FP32)", lambda: client.infer(MODEL, [fp16_input()])),
        ("class_count -1", lambda: client.infer(
            MODEL, inputs(True), outputs=[httpclient.InferRequestedOutput(out, class_count=-1)])),
    ):
        try:
            call()
            check(f"{title} fails", False, "it did not")
        except InferenceServerException as e:
            show(f"{title} (expected error)", f"status {e.status()}: {e.message()}")
            check(f"{title} reads the server's message", e.message() not in ("", "Not Found"))
        except Exception as e:  # noqa: BLE001: a client-side refusal of our own malformed input is fine too
            show(f"{title} (client-side error)", repr(e))

    print("all checks passed" if not failures else f"{len(failures)} checks FAILED: {failures}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
