"""The Azure Functions entry point: create the app and register the blueprints.

Kept deliberately thin and light to import; the logic lives in `optouts`.
"""

import azure.functions as func

from blueprints.audit_api import blueprint as audit_api
from blueprints.http_api import blueprint as http_api
from blueprints.jobs_api import blueprint as jobs_api
from blueprints.openapi_api import blueprint as openapi_api
from blueprints.queue_api import blueprint as queue_api
from optouts import runtime

# Logs every settings problem now rather than at the first request, and sets up telemetry;
# never raises, so a broken setting cannot keep the app from being indexed.
runtime.start()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_api)
app.register_functions(queue_api)
app.register_functions(openapi_api)
app.register_functions(audit_api)
app.register_functions(jobs_api)
