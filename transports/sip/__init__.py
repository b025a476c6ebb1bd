"""SIP (RFC 3261) and SDP (RFC 4566/3264) as sans-I/O layers, bottom up.

=====================  =====================================================================
module                 what it does
=====================  =====================================================================
``message``            bytes <-> :class:`~transports.sip.message.SipRequest` /
                       :class:`~transports.sip.message.SipResponse`, with caps and a
                       :class:`~transports.sip.message.ParseError` naming the status to answer
``sdp``                session descriptions and the audio offer/answer (PCMU, PCMA,
                       telephone-event, hold)
``transaction``        client and server transactions (RFC 3261 §17, timers A-M on a clock
                       passed in as ``now``)
``call``               one call's dialog state and the requests and responses built in it
``bodies``             bodies besides SDP: DTMF by INFO, ``message/sipfrag``
``digest``             digest answers to 401/407 challenges (MD5, SHA-256)
``uri``                ``sip:`` URIs: where a call we place goes
``dialog``             the user agent: dialogs, INVITE/ACK/BYE/CANCEL/OPTIONS, re-INVITE,
                       REFER/NOTIFY, digest retries
``events``             what the user agent tells the session (IncomingCall, CallEnded, ...)
``registration``       REGISTER with a registrar: digest, refresh, backoff, un-REGISTER
=====================  =====================================================================

None of them awaits, reads a clock or opens a socket: an adapter moves datagrams and stream
bytes in and out and calls ``on_timer(now)`` when ``next_timer()`` says so.
"""
