"""Patterns of plain meeting talk used by the offline summariser (no model, no network).

Kept apart from the extraction logic so the phrasings can grow without touching the flow.
Every pattern works on one cleaned sentence; names are single capitalised words.
"""

from __future__ import annotations

import re


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


NAME = r"[A-Z][a-z]{1,15}"
NOT_NAMES = _words(
    """I It It's That This These Those We They There He She You Then So And But Also Okay Ok Right
    Yeah Yes Yep No Sure Well Great Thanks Thank Everyone Someone Somebody Anyone Nobody Everything
    Nothing Something Team Let Let's What Who When Where How Why Which Please Maybe Perhaps Just Now
    Here If Once Next First Today Tomorrow Tonight Sounds Makes Good Cool Perfect Hi Hey Hello Not
    Our My Your Their All Both Each Every Any Some Most The A An Actually Honestly Anyway Agreed
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June
    July August September October November December"""
)

FILLERS = re.compile(r"\b(?:u+m+|u+h+|e+r+m?|h+m+|mm+|uh-huh)\b[,.]?\s*", re.IGNORECASE)
LEADING = re.compile(
    r"^(?:(?:ok(?:ay)?|so|and|also|alright|all right|right|well|yeah|yes|yep|great|good point|perfect|"
    r"cool|then|anyway|oh|hey|hi|hi all|hi everyone|now|next|honestly|but)\b[,.!:]?\s+)+",
    re.IGNORECASE,
)
AFFIRMATIVE = re.compile(
    r"^(?:sure|yes|yeah|yep|yup|ok(?:ay)?|will do|on it|no problem|of course|absolutely|definitely|"
    r"sounds good|got it|can do|i can|i'll|i will|happy to|consider it done)\b",
    re.IGNORECASE,
)

_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DUE_CORE = (
    rf"(?:(?:the\s+)?end\s+of\s+(?:the\s+)?(?:day|week|month|quarter|sprint|year)(?:\s+(?:on\s+)?(?:{_WEEKDAY}|tomorrow|today))?"
    rf"|eod|eow|cob|(?:first\s+thing\s+)?tomorrow(?:\s+(?:morning|afternoon|evening))?|tonight|later\s+today|today"
    rf"|this\s+(?:afternoon|evening|week|month|sprint|{_WEEKDAY})|next\s+(?:week|month|sprint|quarter|{_WEEKDAY})"
    rf"|{_WEEKDAY}(?:\s+(?:morning|afternoon|evening))?|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?"
    rf"|the\s+\d{{1,2}}(?:st|nd|rd|th)|\d{{1,2}}/\d{{1,2}})"
)
DUE = re.compile(
    rf"\b(?:(?:by|before|on|until|till|for|no\s+later\s+than|due)\s+)?(?P<due>{_DUE_CORE})\b", re.IGNORECASE
)

EXPLICIT = re.compile(r"^(?i:action\s+items?|todo|to-do|follow[- ]up)\s*[:\-]\s*(?P<rest>.+)$")
_ASK_YOU = r"(?:can|could|would|will)\s+you(?:\s+please)?(?:\s+also)?"
ADDRESSED = re.compile(
    rf"^(?P<name>{NAME}),?\s+(?i:{_ASK_YOU}|please(?:\s+also)?|"
    r"i\s+need\s+you\s+to|you(?:'ll|\s+will|\s+should|\s+can)|make\s+sure\s+(?:to|you)|go\s+ahead\s+and)\s+(?P<rest>.+)$"
)
ADDRESSED_END = re.compile(rf"^(?i:{_ASK_YOU}|please)\s+(?P<rest>.+?),\s*(?P<name>{NAME})\W*$")
REQUEST = re.compile(rf"^(?i:{_ASK_YOU}|please(?:\s+also)?)\s+(?P<rest>.+)$")
WHO = re.compile(
    r"^(?i:who(?:'s|\s+is)?\s+(?:can|could|will|wants\s+to|would\s+like\s+to|is\s+going\s+to|going\s+to)|"
    r"(?:can|could)\s+(?:someone|somebody|anyone)|does\s+anyone\s+want\s+to|would\s+anyone)\s+(?P<rest>.+)$"
)
NAMED_WILL = re.compile(
    rf"\b(?P<name>{NAME})\s+(?i:will|'ll|is\s+going\s+to|is\s+gonna|needs\s+to|has\s+to|is\s+on|owns)\s+(?P<rest>.+)$"
)
NAMED_TO = re.compile(rf"^(?P<name>{NAME})\s+(?i:to|should)\s+(?P<rest>.+)$")
COMMIT = re.compile(
    r"\b(?i:i\s+will|i'll|i'm\s+going\s+to|i\s+am\s+going\s+to|i'm\s+gonna|i\s+can|let\s+me|i\s+need\s+to|"
    r"i\s+have\s+to|i've\s+got\s+to)\s+(?:(?i:also|just|go\s+ahead\s+and|then)\s+)*(?P<rest>.+)$"
)
TEAM = re.compile(
    r"\b(?i:we\s+need\s+to|we\s+have\s+to|we\s+must|we(?:'ll|\s+will)\s+need\s+to|someone\s+(?:needs|has)\s+to|"
    r"somebody\s+(?:needs|has)\s+to|someone\s+should|we(?:'ll|\s+will)|we're\s+going\s+to)\s+(?P<rest>.+)$"
)
NON_ACTION = re.compile(
    r"^(?i:be|say|admit|think|guess|bet|imagine|see|tell\s+you|assume|understand|agree|hear|remember|know|"
    r"wait|live|start|get\s+started|talk\s+soon|probably|not|never|share\s+(?:my\s+)?screen|have\s+to\s+see|"
    r"go\s+through|move\s+on|keep\s+(?:it|this)\s+short|hand\s+(?:it\s+)?over)\b"
)
VAGUE_WORDS = _words("do take handle own grab cover get it that this them one those done on over up too then now")
PRONOUNS = _words("it that this them those")
TRAILING = re.compile(
    r"(?:,?\s+(?:so\s+that|so|because|since|which|if\s+that's\s+ok(?:ay)?)\s+.*|\s+(?:then|now|too|as\s+well))$",
    re.IGNORECASE,
)

DECISION = re.compile(
    r"(?:^|\b)(?P<marker>(?i:we(?:'ve|\s+have)?\s+(?:all\s+)?agreed|agreed[,:]|we(?:'ve|\s+have)?\s+decided|"
    r"(?:the\s+|final\s+)?decision\s+is|it's\s+decided|we(?:'ve|\s+have)?\s+settled\s+on|we're\s+settled\s+on|"
    r"let's\s+(?:go|stick)\s+with|let's\s+keep|let's\s+use|let's\s+switch\s+to|let's\s+move\s+to|"
    r"we(?:'ll|\s+will|'re\s+going\s+to)\s+(?:go|stick)\s+with|we(?:'ll|\s+will)\s+(?:keep|use|switch\s+to)|"
    r"we're\s+(?:going|sticking)\s+with|we're\s+keeping|the\s+plan\s+is))(?:(?<=[,:])|\b)[,:]?\s*(?P<rest>.*)$"
)
DECISION_PREFIX = re.compile(
    r"^(?:(?:last|this|next|earlier|yesterday|today|on|in|at|after|before|during|when|with|as)\b[^.]{0,60}?,?\s+)?"
    r"(?:to|that)\s+(?P<what>.+)$",
    re.IGNORECASE,
)
DECISION_VERB = {
    "let's go with": "Go with",
    "let's stick with": "Stick with",
    "let's keep": "Keep",
    "let's use": "Use",
    "let's switch to": "Switch to",
    "let's move to": "Move to",
}

OPEN_MARKER = re.compile(
    r"(?i)\b(?:open\s+question|still\s+(?:unclear|open|unknown|undecided)|not\s+sure\s+(?:if|whether|who|how|when|what|anyone)|"
    r"tbd|to\s+be\s+decided|(?:still\s+)?need\s+to\s+figure\s+out|(?:don't|do\s+not)\s+know\s+(?:yet|if|whether|who|how))\b"
)
OPEN_QUESTION = re.compile(
    r"(?i)^(?:(?:do|does|did|should|shall|are|is|will|can|could|have|has|were|was)\s+(?:we|they|it|the|our|anyone|someone|there)\b"
    r"|do\s+you\s+know\b|(?:what|who|when|where|why|how|which)\b)"
)
TOPIC_CUE = re.compile(
    r"(?i)\b(?:first\s+up\s+is|next\s+up\s+is|moving\s+on\s+to|let's\s+talk\s+about|next\s+item\s+is|on\s+the\s+topic\s+of|"
    r"what\s+about|^next,|^on\s+the)\s+(?:the\s+)?(?P<topic>[a-z][\w\- ]{2,40}?)(?=[.,?!]|$)"
)

STOPWORDS = _words(
    """a about above after again against all also am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during
    each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
    herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more
    most mustn't my myself no nor not of off on once only or other ought our ours ourselves out over own same
    shan't she she'd she'll she's should shouldn't so some such than that that's the their theirs them
    themselves then there there's these they they'd they'll they're they've this those through to too under
    until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's which
    while who who's whom why why's with won't would wouldn't you you'd you'll you're you've your yours yourself
    yourselves okay ok yeah yes yep no sure um uh like just really think know get got go going gonna want need
    make take let lets said say thing things one two three four five lot well right good great thanks thank
    everyone anyone someone something everything nothing today tomorrow tonight week weeks day days time still
    also back first next new last yet now actually maybe probably kind sort stuff pretty much bit will can done
    monday tuesday wednesday thursday friday saturday sunday morning afternoon evening sounds cool perfect hi
    hey guys folks talk soon call meeting start started joining already though even every mean means point
    anyway honestly agreed decided plan keep see look put used use way able around else per via add send
    fix check update set doing work working needs sure"""
)
