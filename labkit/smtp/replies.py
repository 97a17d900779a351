"""SMTP replies the lab's MTA sends, as named constants.

Each reply has its basic code (RFC 5321 §4.2) and, where it helps a reader, an enhanced
status code (RFC 3463: class.subject.detail). Messages name the problem. Templates with
``{}`` take the address or value concerned.
"""

# 2xx: done
OK = "250 2.0.0 OK"
SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
QUEUED = "250 2.0.0 OK queued as {}"  # the lecture's "250 OK queued as FFDC3387"
AUTH_OK = "235 2.7.0 Authentication successful"
CANNOT_VRFY = "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery (RFC 5321 3.5.3)"

# 4xx: try again later
RELAY_DENIED = "454 4.7.1 <{}>: Relay access denied"  # like Postfix (defer_unauth_destination)
GREYLISTED = "451 4.7.1 <{}>: greylisted, please try again later (RFC 6647)"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients (at most {} per message, RFC 5321 4.5.3.1.8)"
SPOOL_FAILED = "451 4.3.0 Could not queue the message: {}"
SHUTTING_DOWN = "421 4.3.2 {} closing connection: service shutting down"
LOCAL_ERROR = "451 4.3.0 Requested action aborted: local error in processing: {}; try again later"
SESSION_FAILED = "451 4.3.0 {}: internal error in the SMTP session ({}); closing the connection, try again later"

# 5xx: permanent failure
BAD_ADDRESS_SYNTAX = "501 5.1.3 Bad address syntax: expected <local-part@domain> (RFC 5321 4.1.2)"
BAD_SENDER_SYNTAX = "501 5.1.7 <{}>: bad sender address syntax (RFC 5321 4.1.2)"
BAD_RECIPIENT_SYNTAX = "501 5.1.3 <{}>: bad recipient address syntax (RFC 5321 4.1.2)"
BAD_SENDER_CONTROL = "501 5.1.7 <{}>: bad sender address syntax: control character in address (RFC 5321 4.1.2)"
BAD_RECIPIENT_CONTROL = "501 5.1.3 <{}>: bad recipient address syntax: control character in address (RFC 5321 4.1.2)"
BAD_HELLO_CONTROL = "501 5.5.2 <{}>: bad HELO/EHLO name: control character (RFC 5321 4.1.1.1)"
BAD_ADDRESS_CONTROL = "501 5.1.3 <{}>: bad address syntax: control character in address (RFC 5321 4.1.2)"
NEED_RCPT = "503 5.5.1 Error: need RCPT command"
AUTH_DISABLED = "503 5.5.1 Authentication is not enabled on this service: use the submission port"
UNKNOWN_USER = "550 5.1.1 <{}>: Recipient address rejected: user unknown in local recipient table"
REFUSED = "550 5.7.1 <{}>: Recipient refused by policy of this host"
AUTH_REQUIRED = "530 5.7.0 Authentication required: log in with AUTH first, or use a trusted network"
SENDER_NOT_OWNED = "553 5.7.1 <{}>: Sender address rejected: not owned by user {}"
TOO_MANY_HOPS = "554 5.4.6 Too many hops: {} Received headers (limit {}), probably a mail loop (RFC 5321 6.3)"
MESSAGE_TOO_BIG = "552 5.3.4 Message too big for system (limit {} bytes)"
