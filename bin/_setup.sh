# Sourced by bin/demo and bin/test: a Python environment with the project installed, and a
# running PostgreSQL. Safe to run again; it only does what is missing.

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/billables}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

ensure_python() {
    local stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
    if [ ! -x .venv/bin/python ] || [ ! -x .venv/bin/pip ]; then
        # A missing or half-made environment (an interrupted earlier run) is made anew.
        rm -rf .venv
        python3 -m venv .venv
    fi
    if [ ! -f "$stamp" ]; then
        echo "Installing Python dependencies..."
        .venv/bin/pip install --quiet --upgrade pip
        .venv/bin/pip install --quiet -e ".[test]"
        rm -f .venv/.installed-* && touch "$stamp"
    fi
    ensure_pdf_libraries
}

ensure_pdf_libraries() {
    # WeasyPrint (the invoice PDF) loads Debian's Pango when imported; installed the way
    # Chromium is, only when missing.
    if ldconfig -p | grep -q 'libpangoft2-1.0.so.0'; then
        return
    fi
    echo "Installing Pango from Debian's packages (for invoice PDFs)..."
    local sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    fi
    if ! { $sudo apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
            libpango-1.0-0 libpangoft2-1.0-0 >/dev/null; }; then
        echo "Pango could not be installed from Debian's packages: invoice PDFs need it" >&2
        exit 1
    fi
}

ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        return
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "Installing PostgreSQL from Debian's packages..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    echo "Starting PostgreSQL..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 && return
        sleep 1
    done
    echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
    exit 1
}

ensure_chromium() {
    # The browser tests drive Debian's own Chromium through Playwright's executable_path;
    # `playwright install` (a downloaded browser) is never used.
    if [ -x /usr/bin/chromium ]; then
        return
    fi
    echo "Installing Chromium from Debian's packages (for the browser tests)..."
    local sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    fi
    if ! { $sudo apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; }; then
        # In CI (the CI variable set) a missing browser is a failure, not a silent skip.
        if [ -n "${CI:-}" ]; then
            echo "Chromium could not be installed from Debian's packages" >&2
            exit 1
        fi
        echo "Chromium could not be installed: the browser tests will say they are skipped" >&2
    fi
}

ensure_database() {
    # The database DATABASE_URL names (tests make their own test_ copy beside it).
    local name="${DATABASE_URL##*/}" server="${DATABASE_URL%/*}"
    name="${name%%\?*}"
    if [ "$(psql "$server/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
        psql "$server/postgres" -qc "CREATE DATABASE \"$name\""
    fi
}
