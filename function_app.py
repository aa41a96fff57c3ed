"""snapcopy's Azure Functions entry point (Python v2 model): wiring only, logic in shared/."""

import azure.functions as func

from shared.triggers import blueprint

app = func.FunctionApp()
app.register_functions(blueprint)
