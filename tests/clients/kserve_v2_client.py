"""Drives a v2 server with KServe's InferenceRESTClient; run with .venv-kserve/bin/python.

    kserve_v2_client.py BASE_URL MODEL_NAME REQUEST_JSON

REQUEST_JSON: {"inputs": [{"name", "shape", "datatype", "data"}], "binary": bool}. Prints
one JSON object: the health answers, the outputs (name -> flat list and shape) and the
error text the client raised for an unknown model. KServe's SDK pins psutil<6, which
BentoML's pin excludes, so it lives in a venv of its own (`make kserve-client`).
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(base_url: str, model: str, request: dict) -> dict:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    try:
        inputs = []
        for tensor in request["inputs"]:
            infer_input = InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
            dtype = object if tensor["datatype"] == "BYTES" else np.float64
            array = np.array(tensor["data"], dtype=dtype).reshape(tensor["shape"])
            infer_input.set_data_from_numpy(array, binary_data=request["binary"])
            inputs.append(infer_input)
        answer = await client.infer(base_url, InferRequest(model, inputs, request_id="k1"), model)
        outputs = {
            output.name: {
                "shape": list(output.shape),
                "data": [_plain(v) for v in output.as_numpy().reshape(-1).tolist()],
            }
            for output in answer.outputs
        }
        try:
            await client.infer(base_url, InferRequest("no-such-model", inputs), "no-such-model")
            unknown = None
        except httpx.HTTPStatusError as error:
            unknown = {"status": error.response.status_code, "message": str(error)}
        return {
            "live": await client.is_server_live(base_url),
            "ready": await client.is_server_ready(base_url),
            "model_ready": await client.is_model_ready(base_url, model),
            "id": answer.id,
            "outputs": outputs,
            "unknown_model": unknown,
        }
    finally:
        await client.close()


def _plain(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


if __name__ == "__main__":
    url, name, path = sys.argv[1:4]
    with open(path) as file:
        print(json.dumps(asyncio.run(main(url, name, json.load(file)))))
