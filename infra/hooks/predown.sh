#!/bin/sh
# azd predown hook: removes what `azd down` cannot, because it lives outside the resource
# group it deletes:
#   - the event subscription, when it is on a reused system topic in another group;
#   - the resource groups holding the other source subscriptions' system topics;
#   - the app identity's role assignments at the source and target scopes;
#   - snapcopy's custom role definitions (deletable only once nothing is assigned them).
# It never fails `azd down`: what it cannot remove, it names.
set -eu
. "$(dirname "$0")/lib.sh"
load_azd_env

if ! az_ready; then
    warn "the Azure CLI (az) is missing or not signed in: remove by hand the role assignments of"
    warn "principal ${AZURE_MANAGED_IDENTITY_PRINCIPAL_ID:-?}, the roles ${SNAPCOPY_ROLE_DEFINITION_IDS:-?}"
    warn "and, on a reused system topic, the event subscription ${EVENTGRID_SUBSCRIPTION_NAME:-?}."
    exit 0
fi

if [ "$(lower "${EVENTGRID_SYSTEM_TOPIC_REUSED:-false}")" = "true" ]; then
    id="/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/$EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP/providers/Microsoft.EventGrid/systemTopics/$EVENTGRID_SYSTEM_TOPIC_NAME/eventSubscriptions/$EVENTGRID_SUBSCRIPTION_NAME"
    say "deleting the event subscription on the reused topic $EVENTGRID_SYSTEM_TOPIC_NAME"
    az resource delete --ids "$id" --output none || warn "could not delete $id"
fi

# the other source subscriptions' topics live in resource groups of their own there
for topic in $(printf '%s' "${EVENTGRID_SOURCE_TOPICS:-}" | tr ',' ' '); do
    subscription=${topic%%/*}
    rest=${topic#*/}
    say "deleting ${rest%%/*} (the system topic of subscription $subscription)"
    az group delete --subscription "$subscription" --name "${rest%%/*}" --yes --no-wait --output none ||
        warn "could not delete ${rest%%/*} in subscription $subscription"
done

principal=${AZURE_MANAGED_IDENTITY_PRINCIPAL_ID:-}
if [ -n "$principal" ]; then
    for subscription in $(printf '%s' "${SNAPCOPY_RBAC_SUBSCRIPTIONS:-$AZURE_SUBSCRIPTION_ID}" | tr ',' ' '); do
        ids=$(az role assignment list --all --subscription "$subscription" \
            --query "[?principalId=='$principal'].id" --output tsv) || ids=""
        for id in $ids; do
            az role assignment delete --ids "$id" --output none || warn "could not delete $id"
        done
    done
fi

for id in $(printf '%s' "${SNAPCOPY_ROLE_DEFINITION_IDS:-}" | tr ',' ' '); do
    say "deleting custom role $id"
    az rest --method delete --url "$id?api-version=2022-04-01" --output none || warn "could not delete $id"
done
