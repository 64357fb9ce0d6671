"""Checks Muon Serve's gRPC endpoint with NVIDIA's own client, tritonclient[grpc]==2.73.0 (dev tooling only).

Runs against a server already started (see README-grpc.md): health, server and model metadata, model config and
statistics, infer with raw tensors (what tritonclient always sends), an error, the repository index, unload and load,
and compares the gRPC answer with the REST v2 JSON answer for the same tensor. Exits 1 on any mismatch.

Usage: python grpc_check.py [--grpc 127.0.0.1:8001] [--http http://127.0.0.1:8080] [--token ADMIN_TOKEN]
"""

import argparse
import json
import sys
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

MODEL = "text-orientation"
failures = []


def check(what, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}")
    if not ok:
        failures.append(what)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--grpc", default="127.0.0.1:8001")
    p.add_argument("--http", default="http://127.0.0.1:8080")
    p.add_argument("--token", default=None, help="MUON_ADMIN_TOKEN, for unload and load")
    a = p.parse_args()
    client = grpcclient.InferenceServerClient(url=a.grpc)

    check("is_server_live", client.is_server_live())
    check("is_server_ready", client.is_server_ready())
    meta = client.get_server_metadata(as_json=True)
    check("get_server_metadata", meta.get("name") == "muon-serve", json.dumps(meta))
    check(f"is_model_ready({MODEL})", client.is_model_ready(MODEL))

    mm = client.get_model_metadata(MODEL, as_json=True)
    rest_mm = json.load(urllib.request.urlopen(f"{a.http}/v2/models/{MODEL}"))
    # proto3 JSON writes int64 as strings: compare as numbers
    grpc_mm = {**mm, "inputs": [{**t, "shape": [int(d) for d in t["shape"]]} for t in mm["inputs"]],
               "outputs": [{**t, "shape": [int(d) for d in t["shape"]]} for t in mm["outputs"]]}
    check("get_model_metadata equals GET /v2/models/{name}", grpc_mm == rest_mm, json.dumps(mm))

    cfg = client.get_model_config(MODEL, as_json=True)["config"]
    check("get_model_config", cfg.get("name") == MODEL and cfg.get("platform") == "onnxruntime_onnx",
          json.dumps({k: cfg[k] for k in ("name", "platform", "max_batch_size") if k in cfg}))
    stats = client.get_inference_statistics(MODEL, as_json=True)
    check("get_inference_statistics", [s["name"] for s in stats["model_stats"]] == [MODEL],
          json.dumps(stats["model_stats"][0])[:160])

    # a deterministic input: tritonclient sends it in raw_input_contents
    x = np.random.default_rng(0).uniform(-1, 1, size=(1, 3, 48, 192)).astype(np.float32)
    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = client.infer(MODEL, [inp], outputs=[grpcclient.InferRequestedOutput("softmax_0.tmp_0")], request_id="check-1")
    got = res.as_numpy("softmax_0.tmp_0")
    body = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()
    req = urllib.request.Request(f"{a.http}/v2/models/{MODEL}/infer", data=body,
                                 headers={"content-type": "application/json"})
    rest = json.load(urllib.request.urlopen(req))
    want = np.array(rest["outputs"][0]["data"], dtype=np.float32).reshape(rest["outputs"][0]["shape"])
    check("infer (raw) equals POST /v2/models/{name}/infer (JSON)", got.shape == want.shape and np.array_equal(got, want),
          f"grpc {got.tolist()} rest {want.tolist()} id={res.get_response().id}")

    try:
        client.infer("no-such-model", [inp])
        check("infer on an unknown model fails", False)
    except InferenceServerException as e:
        check("infer on an unknown model is NOT_FOUND", e.status() == "StatusCode.NOT_FOUND", e.message())

    index = client.get_model_repository_index(as_json=True)["models"]
    check("get_model_repository_index", any(m["name"] == MODEL and m.get("state") == "READY" for m in index),
          ", ".join(f"{m['name']}:{m.get('state', '')}" for m in index))

    if a.token:
        auth = {"authorization": f"Bearer {a.token}"}
        client.unload_model("language-id", headers=auth)
        check("unload_model(language-id), then not ready", not client.is_model_ready("language-id"))
        client.load_model("language-id", headers=auth)
        check("load_model(language-id), then ready", client.is_model_ready("language-id"))
    else:
        try:
            client.unload_model("language-id")
            check("unload_model without a token fails", False)
        except InferenceServerException as e:
            check("unload_model without MUON_ADMIN_TOKEN is refused", "MUON_ERR_ADMIN_DISABLED" in e.message(),
                  f"{e.status()} {e.message()}")

    client.close()
    print(f"{'all checks passed' if not failures else f'{len(failures)} failed: {failures}'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
