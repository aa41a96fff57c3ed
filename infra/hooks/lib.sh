# Shared by the azd hooks (POSIX sh: azd runs posix hooks with `sh`).
# shellcheck shell=sh

say() { printf 'snapcopy: %s\n' "$*"; }
warn() { printf 'snapcopy: warning: %s\n' "$*" >&2; }
die() {
    printf 'snapcopy: error: %s\n' "$*" >&2
    exit 1
}

# azd passes the environment's values (and the last provision's outputs) to hooks as
# environment variables. Run by hand, a hook loads them from `azd env get-values`.
load_azd_env() {
    if [ -n "${AZURE_ENV_NAME:-}" ] || ! command -v azd >/dev/null 2>&1; then
        return 0
    fi
    values=$(azd env get-values) || die "azd env get-values failed: select an environment with 'azd env select'"
    while IFS='=' read -r key value; do
        case "$key" in
        '' | *[!A-Za-z0-9_]*) continue ;;
        esac
        value=${value#\"}
        value=${value%\"}
        export "$key=$value"
    done <<VALUES
$values
VALUES
}

# True when the Azure CLI is installed and signed in. Selects the azd environment's
# subscription so that every az command below acts on it.
az_ready() {
    command -v az >/dev/null 2>&1 || return 1
    az account show --output none >/dev/null 2>&1 || return 1
    if [ -n "${AZURE_SUBSCRIPTION_ID:-}" ]; then
        az account set --subscription "$AZURE_SUBSCRIPTION_ID" >/dev/null 2>&1 || return 1
    fi
    return 0
}

lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

# The repository root (the hooks live in infra/hooks).
repo_root() { (cd "$(dirname "$0")/../.." && pwd); }
