from contracts import deals as s
from gateway.calls import call
from gateway.routes import api

TAG = "pipelines"
WRITE_ERRORS = (400, 403, 404, 409, 413, 415, 422, 503, 504)


@api.route("/pipelines", "GET", "List sales pipelines with their ordered stages", TAG,
           query=s.PipelineListQuery, response=s.PipelinePage, permission="pipelines:read")
def list_pipelines(body, params):
    return call("deals", "list_pipelines", params)


@api.route("/pipelines", "POST", "Create a pipeline (at least one open, one won and one lost stage)",
           TAG, body=s.PipelineIn, response=s.PipelineOut, status=201,
           errors=(400, 403, 413, 415, 422, 503, 504), permission="pipelines:write")
def create_pipeline(body, params):
    return call("deals", "create_pipeline", body)


@api.route("/pipelines/{pipeline_id}", "GET", "Get a pipeline", TAG, response=s.PipelineOut,
           permission="pipelines:read")
def get_pipeline(pipeline_id, body, params):
    return call("deals", "get_pipeline", pipeline_id)


@api.route("/pipelines/{pipeline_id}", "PATCH", "Rename, reorder, add or remove stages (stages "
           "keep their ids; a removed stage with deals needs move_deals_to)", TAG,
           body=s.PipelineIn, partial=True, response=s.PipelineOut, errors=WRITE_ERRORS,
           permission="pipelines:write")
def update_pipeline(pipeline_id, body, params):
    return call("deals", "update_pipeline", pipeline_id, body)


@api.route("/pipelines/{pipeline_id}", "DELETE", "Delete a pipeline without deals", TAG,
           response=s.PipelineOut, errors=(400, 403, 404, 409, 503, 504),
           permission="pipelines:write")
def delete_pipeline(pipeline_id, body, params):
    return call("deals", "delete_pipeline", pipeline_id)
