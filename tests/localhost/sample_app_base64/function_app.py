"""A small app that exercises what the local host must support; not the product."""

import json
import os
from pathlib import Path

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
RECORD = Path(os.environ.get("SAMPLE_RECORD_DIR", "."))


@app.route(route="items/special", methods=["GET"])
def special(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("special")


@app.route(route="items/{id:int}", methods=["GET"])
def item_by_id(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"id": req.route_params["id"], "q": req.params.get("q")}),
                             mimetype="application/json")


@app.route(route="items/{name}", methods=["GET", "POST"])
def item_by_name(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"name": req.route_params["name"], "method": req.method,
                                         "body": req.get_body().decode()}),
                             status_code=201 if req.method == "POST" else 200, mimetype="application/json",
                             headers={"x-sample": "yes"})


@app.route(route="files/{*path}", auth_level=func.AuthLevel.ANONYMOUS)
def files(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.route_params.get("path", ""))


@app.route(route="admin/ping", auth_level=func.AuthLevel.ADMIN)
def admin_ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")


@app.route(route="async/echo", methods=["POST"])
async def async_echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), mimetype="text/plain")


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("the sample fails on purpose")


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
def record(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode("utf-8", errors="replace")
    with open(RECORD / "deliveries.jsonl", "a", encoding="utf-8") as out:
        out.write(json.dumps({"id": msg.id, "body": body, "dequeue_count": msg.dequeue_count}) + "\n")
    if "fail" in body:
        raise RuntimeError("the sample fails this message on purpose")
