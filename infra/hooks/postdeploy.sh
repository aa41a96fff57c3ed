#!/bin/sh
# azd postdeploy hook: subscribes on_snapshot_written to the subscription's system topic.
#
# Event Grid validates an AzureFunction endpoint when the event subscription is created,
# and the function exists only once `azd deploy` has published the code and the host has
# indexed it. So the subscription cannot be part of `azd provision` on the first `azd up`:
# it is deployed here, from infra/app/event-subscription.bicep (the same module main.bicep
# uses when deployEventSubscription is true), on every `azd deploy`. The deployment is
# idempotent, so this also puts back a subscription someone changed or deleted.
set -eu
. "$(dirname "$0")/lib.sh"
load_azd_env

for name in AZURE_FUNCTION_APP_ID AZURE_STORAGE_ACCOUNT_ID EVENTGRID_SYSTEM_TOPIC_NAME \
    EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP EVENTGRID_SUBSCRIPTION_NAME EVENTGRID_DEADLETTER_CONTAINER; do
    eval "value=\${$name:-}"
    # shellcheck disable=SC2154 # value is set by the eval above
    [ -n "$value" ] || die "$name is not in the azd environment: run 'azd provision' first"
done
az_ready || die "the Azure CLI (az) is needed to create the Event Grid subscription: install it, run 'az login', then 'azd hooks run postdeploy'"

function_id="$AZURE_FUNCTION_APP_ID/functions/on_snapshot_written"
wait_seconds=${SNAPCOPY_FUNCTION_WAIT_SECONDS:-300}
waited=0
say "waiting for the host to index on_snapshot_written"
until az rest --method get --url "$function_id?api-version=2024-04-01" --output none >/dev/null 2>&1; do
    [ "$waited" -lt "$wait_seconds" ] ||
        die "on_snapshot_written is not listed after ${wait_seconds}s: check the deployment in the function app's log stream"
    sleep 10
    waited=$((waited + 10))
done

set -- \
    eventSubscriptionName="$EVENTGRID_SUBSCRIPTION_NAME" \
    functionAppId="$AZURE_FUNCTION_APP_ID" \
    deadLetterStorageAccountId="$AZURE_STORAGE_ACCOUNT_ID" \
    deadLetterContainerName="$EVENTGRID_DEADLETTER_CONTAINER" \
    maxDeliveryAttempts="${EVENTGRID_MAX_DELIVERY_ATTEMPTS:-30}"
scopes=$(printf '%s' "${COPY_SOURCE_SCOPES:-}" | tr -d ' ')
[ -z "$scopes" ] || set -- "$@" sourceScopes="$scopes"

say "creating the Event Grid subscription $EVENTGRID_SUBSCRIPTION_NAME on $EVENTGRID_SYSTEM_TOPIC_NAME"
az deployment group create \
    --resource-group "$EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP" \
    --name "$EVENTGRID_SUBSCRIPTION_NAME" \
    --template-file "$(repo_root)/infra/app/event-subscription.bicep" \
    --parameters "$@" systemTopicName="$EVENTGRID_SYSTEM_TOPIC_NAME" \
    --output none

# the other source subscriptions' topics: <subscription>/<resource group>/<topic>
for topic in $(printf '%s' "${EVENTGRID_SOURCE_TOPICS:-}" | tr ',' ' '); do
    subscription=${topic%%/*}
    rest=${topic#*/}
    say "creating the Event Grid subscription $EVENTGRID_SUBSCRIPTION_NAME on ${rest#*/} (subscription $subscription)"
    az deployment group create \
        --subscription "$subscription" \
        --resource-group "${rest%%/*}" \
        --name "$EVENTGRID_SUBSCRIPTION_NAME" \
        --template-file "$(repo_root)/infra/app/event-subscription.bicep" \
        --parameters "$@" systemTopicName="${rest#*/}" \
        --output none
done
say "Event Grid delivers snapshot writes to on_snapshot_written (dead letters: container $EVENTGRID_DEADLETTER_CONTAINER)"
