"""RTP for the SIP transport (RFC 3550, RFC 4733), sans-I/O, bottom up.

=============  ===========================================================================
module         what it does
=============  ===========================================================================
``packet``     RTP packets and compound RTCP (SR, RR, SDES CNAME, BYE), parsed and built
``jitter``     the inbound jitter buffer (reorder, duplicates, late loss, SSRC change) and
               the reception statistics RTCP reports
``dtmf``       RFC 4733 telephone events: a digit's packets out, digits in
``stream``     one G.711 call leg driven by a 20 ms tick: frames both ways, comfort
               silence, DTMF, symmetric RTP, RTCP
=============  ===========================================================================

Time is always passed in (samples at 8 kHz, or a 64-bit NTP time for RTCP); nothing here reads a
clock or opens a socket.
"""
