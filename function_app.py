"""The Azure Functions entry point: create the app and register the blueprints.

Kept deliberately thin and light to import; the logic lives in `optouts`.
"""

import azure.functions as func

from blueprints.audit_api import blueprint as audit_api
from blueprints.http_api import blueprint as http_api
from blueprints.openapi_api import blueprint as openapi_api
from blueprints.queue_api import blueprint as queue_api

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_api)
app.register_functions(queue_api)
app.register_functions(openapi_api)
app.register_functions(audit_api)
