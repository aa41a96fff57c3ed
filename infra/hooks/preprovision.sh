#!/bin/sh
# azd preprovision hook: checks what Bicep cannot, before anything is created.
#   1. The snapcopy settings given as azd environment values have the app's format
#      (shared/config.py would refuse them at start-up, after a whole deployment).
#   2. The subscription's Event Grid system topic: a subscription has at most one. If one
#      exists that snapcopy did not create, it must be reused (SNAPCOPY_EXISTING_SYSTEM_TOPIC_*)
#      and it must have a system-assigned identity (it dead-letters into snapcopy's storage).
set -eu
. "$(dirname "$0")/lib.sh"
load_azd_env

problems=0
problem() {
    printf 'snapcopy: error: %s\n' "$*" >&2
    problems=$((problems + 1))
}

# --- 1. settings -------------------------------------------------------------------------
regions=$(printf '%s' "${COPY_TARGET_REGIONS:-}" | tr -d ' ')
if [ -n "${COPY_POLICIES:-}" ]; then
    # the app checks every policy field at start-up; here, only what would clash
    [ -z "$regions" ] || problem "COPY_POLICIES and COPY_TARGET_REGIONS are both set: unset COPY_TARGET_REGIONS"
    [ -z "$(printf '%s' "${COPY_TARGET_RESOURCE_GROUP:-}" | tr -d ' ')" ] ||
        problem "COPY_POLICIES and COPY_TARGET_RESOURCE_GROUP are both set: unset COPY_TARGET_RESOURCE_GROUP"
    case "$(printf '%s' "$COPY_POLICIES" | tr -d ' \n')" in
    \[*\]) ;;
    *) problem "COPY_POLICIES: not a JSON array of policies" ;;
    esac
elif [ -z "$regions" ]; then
    problem "neither COPY_TARGET_REGIONS nor COPY_POLICIES is set (run: azd env set COPY_TARGET_REGIONS westus3)"
else
    for region in $(printf '%s' "$regions" | tr ',' ' '); do
        printf '%s' "$region" | grep -Eq '^[a-z][a-z0-9]{2,39}$' ||
            problem "COPY_TARGET_REGIONS: '$region' is not a region name like 'westus3'"
    done
fi

scopes=$(printf '%s' "${COPY_SOURCE_SCOPES:-}" | tr -d ' ')
count=0
for scope in $(printf '%s' "$scopes" | tr ',' ' '); do
    count=$((count + 1))
    printf '%s' "$scope" | grep -Eiq '^/subscriptions/[0-9a-f-]{36}(/resourcegroups/[-a-z0-9._()]{1,90})?$' ||
        problem "COPY_SOURCE_SCOPES: '$scope' is not /subscriptions/<id> or /subscriptions/<id>/resourceGroups/<name>"
done
# Event Grid allows 25 advanced-filter values in all; the snapshot-write filter uses one.
[ "$count" -le 24 ] || problem "COPY_SOURCE_SCOPES: $count scopes; the Event Grid filter takes at most 24"

target=$(printf '%s' "${COPY_TARGET_RESOURCE_GROUP:-}" | tr -d ' ')
case "$target" in
'') ;;
/*)
    printf '%s' "$target" | grep -Eiq '^/subscriptions/[0-9a-f-]{36}/resourcegroups/[-a-z0-9._()]{1,90}$' ||
        problem "COPY_TARGET_RESOURCE_GROUP: '$target' is not /subscriptions/<id>/resourceGroups/<name>"
    ;;
*)
    printf '%s' "$target" | grep -Eiq '^[-a-z0-9._()]{1,90}$' ||
        problem "COPY_TARGET_RESOURCE_GROUP: '$target' is not a resource group name"
    ;;
esac

topic_name=${SNAPCOPY_EXISTING_SYSTEM_TOPIC_NAME:-}
topic_group=${SNAPCOPY_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP:-}
if [ -n "$topic_name" ] && [ -z "$topic_group" ]; then
    problem "SNAPCOPY_EXISTING_SYSTEM_TOPIC_NAME is set but SNAPCOPY_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP is not"
fi

[ "$problems" -eq 0 ] || die "$problems setting(s) to fix (azd env set NAME VALUE), then run azd up again"

# --- 2. the subscription's system topic -------------------------------------------------
if ! az_ready; then
    warn "the Azure CLI (az) is missing or not signed in: the Event Grid system topic check is skipped."
    warn "If this subscription already has a system topic, provisioning will fail; see README.md, "Deploy to Azure"."
    exit 0
fi

subscription="/subscriptions/${AZURE_SUBSCRIPTION_ID:-$(az account show --query id --output tsv)}"
own_group=$(lower "${AZURE_RESOURCE_GROUP:-rg-${AZURE_ENV_NAME:-}}")
# name, resource group, source, topic type, identity type: one line per topic.
topics=$(az eventgrid system-topic list --query '[].[name, resourceGroup, source, topicType, identity.type]' --output tsv)
subscription_topic=$(printf '%s\n' "$topics" | awk -F '\t' -v s="$(lower "$subscription")" \
    'tolower($3) == s && tolower($4) == "microsoft.resources.subscriptions" { print; exit }')

if [ -n "$topic_name" ]; then
    match=$(printf '%s\n' "$topics" | awk -F '\t' -v n="$(lower "$topic_name")" -v g="$(lower "$topic_group")" \
        'tolower($1) == n && tolower($2) == g { print; exit }')
    [ -n "$match" ] || die "no Event Grid system topic '$topic_name' in resource group '$topic_group'"
    case "$(lower "$(printf '%s' "$match" | cut -f5)")" in
    *systemassigned*) say "reusing the system topic $topic_name ($topic_group)" ;;
    *) die "the system topic '$topic_name' has no system-assigned identity, which dead-lettering needs. Enable it:
    az eventgrid system-topic update --name $topic_name --resource-group $topic_group --identity systemassigned" ;;
    esac
elif [ -n "$subscription_topic" ]; then
    name=$(printf '%s' "$subscription_topic" | cut -f1)
    group=$(printf '%s' "$subscription_topic" | cut -f2)
    if [ "$(lower "$group")" != "$own_group" ]; then
        die "this subscription already has an Event Grid system topic, '$name' in '$group', and a subscription can have only one. Reuse it:
    azd env set SNAPCOPY_EXISTING_SYSTEM_TOPIC_NAME $name
    azd env set SNAPCOPY_EXISTING_SYSTEM_TOPIC_RESOURCE_GROUP $group"
    fi
fi

# --- 3. the other source subscriptions get a topic of their own: none may have one yet ---
events_group=$(lower "rg-${AZURE_ENV_NAME:-}-snapcopy-events")
others=$(printf '%s' "$scopes" | tr ',' '\n' | cut -d/ -f3 | tr 'A-F' 'a-f' | sort -u)
for other in $others; do
    [ "$other" != "$(lower "${subscription#/subscriptions/}")" ] || continue
    found=$(az eventgrid system-topic list --subscription "$other" \
        --query '[].[name, resourceGroup, source, topicType, identity.type]' --output tsv) || found=""
    clash=$(printf '%s\n' "$found" | awk -F '\t' -v g="$events_group" \
        'tolower($4) == "microsoft.resources.subscriptions" && tolower($2) != g { print $1 " in " $2; exit }')
    [ -z "$clash" ] || problem "source subscription $other already has an Event Grid system topic ($clash); snapcopy cannot add its own there (README, \"Sources in several subscriptions\")"
done
[ "$problems" -eq 0 ] || die "$problems source subscription(s) to sort out first"
say "preprovision checks passed"
