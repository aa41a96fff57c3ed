"""snapcopy's Azure Functions entry point (Python v2 model): wiring only, logic in shared/.

It must not hold logic: a new trigger goes in a blueprint in shared/.
"""

import azure.functions as func

from shared import api, policy_api, triggers

app = func.FunctionApp()
app.register_functions(triggers.blueprint)
app.register_functions(api.blueprint)
app.register_functions(policy_api.blueprint)
