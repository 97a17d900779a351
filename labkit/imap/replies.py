"""IMAP server responses, as named constants (RFC 3501 §7; response codes in brackets:
RFC 3501 §7.1, RFC 5530, RFC 4315 UIDPLUS). ``{}`` fields are filled in by the session."""

from labkit import __version__

CAPABILITIES = "IMAP4rev1 LITERAL+ SASL-IR IDLE UIDPLUS UNSELECT CHILDREN MOVE ID NAMESPACE AUTH=PLAIN"
ID_FIELDS = (("name", "labkit"), ("version", __version__))  # RFC 2971 §3.3 field names

GREETING = "* OK [CAPABILITY {caps}] {host} labkit IMAP4rev1 server ready"
BYE_LOGOUT = "* BYE {host} IMAP4rev1 server logging out"
BYE_AUTOLOGOUT = "* BYE Autologout: idle for {seconds:g} seconds (RFC 3501 5.4)"
BYE_TOO_MANY_FAILURES = "* BYE Too many failed logins, closing the connection"
BYE_MAILBOX_GONE = "* BYE The selected mailbox {name} no longer exists: {reason}"
CONTINUE_LITERAL = "+ Ready for literal"
CONTINUE_IDLE = "+ idling, send DONE to stop"
CONTINUE_AUTH = "+ "

DONE = "{command} completed"
LOGGED_IN = "[CAPABILITY {caps}] Logged in as {user}"
SELECTED = "[{mode}] {command} completed, now in the selected state"
APPENDED = "[APPENDUID {uidvalidity} {uid}] APPEND completed"
COPYUID = "[COPYUID {uidvalidity} {source} {target}]"
IDLE_DONE = "IDLE terminated"
OK_EXPUNGE_ISSUED = "[EXPUNGEISSUED] {command} completed; some messages were expunged by another session: {what}"

# BAD: the command could not be understood
BAD_SYNTAX = "{command}: {problem}"
BAD_UNKNOWN = "unknown command {command}"
BAD_NO_TAG = "command without a tag: {problem}"
BAD_EMPTY = "empty command line"
BAD_STATE = "{command} is not allowed in the {state} state: {hint}"
BAD_EXPECTED_DONE = "expected DONE to end IDLE"
BAD_AUTH_CANCELLED = "AUTHENTICATE cancelled by the client"

# NO: understood, but it did not work
NO_LOGIN = "[AUTHENTICATIONFAILED] Invalid user name or password"
NO_AUTH_MALFORMED = "[AUTHENTICATIONFAILED] Malformed AUTHENTICATE PLAIN response (RFC 4616: base64 of authzid NUL authcid NUL password)"
NO_AUTHZID = "[AUTHORIZATIONFAILED] Cannot act as {authzid!r}: the authorization identity must be empty or the login name"
NO_MECHANISM = "Unsupported SASL mechanism {mechanism}: only PLAIN"
NO_SERVER_BUG = "[SERVERBUG] Cannot open the mail store: {reason}"
NO_MAILBOX = "[NONEXISTENT] {reason}"
NO_TRYCREATE = "[TRYCREATE] {reason}: CREATE it first"
NO_EXISTS = "[ALREADYEXISTS] {reason}"
NO_CANNOT = "[CANNOT] {reason}"
NO_LIMIT = "[LIMIT] {reason}"
NO_IN_USE = "[INUSE] Mailbox {name} is selected: CLOSE it first"
NO_READ_ONLY = "[READ-ONLY] Mailbox {name} was opened with EXAMINE: it is read-only"
NO_EXPUNGE_ISSUED = "[EXPUNGEISSUED] Some of the requested messages were expunged by another session"
NO_BADCHARSET = "[BADCHARSET (UTF-8 US-ASCII)] {reason}"
NO_STORE = "{reason}"
NO_INTERNAL = "[SERVERBUG] {command} failed: {error}"

HINT_LOGIN = "LOGIN or AUTHENTICATE first"
HINT_SELECT = "SELECT a mailbox first"
HINT_LOGGED_IN = "already logged in"
