"""A small multilingual world: seeded, parallel synthetic text in seven languages.

Why: the demo pretrains a tiny language model, looks for its language-specific neurons and then
measures zero-shot cross-lingual transfer, all offline. That needs (a) enough monolingual text in
several scripts to pretrain on and (b) task data (NLI, extractive QA) that is parallel across
languages item by item, with labels that follow from the text. Nothing here is copied from a
corpus: the lexicons and the grammar below were written for this module.

How: a language-independent `Meaning` (who does what to which object, where, when; who is where;
who has how many of what; negated or not) is sampled with `random.Random(seed)` and rendered by
one small grammar per language (word order, articles, case, gender and number agreement, number
words). Inflected forms are stored in the lexicon rather than derived, except for a few regular
patterns (German weak adjective endings, Hindi habitual participles, the Arabic 3rd person
feminine prefix). Rendering one meaning in every language gives a parallel corpus; NLI items are
pairs of meanings related by a logical operation (dropping or adding details under the right
polarity, negating, moving a person, changing a count); QA items are short scenes of distinct
facts with a question about one slot of one fact.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

__all__ = [
    "LANGUAGES",
    "SCRIPTS",
    "Meaning",
    "monolingual_corpus",
    "nli_items",
    "parallel_corpus",
    "qa_items",
    "render",
    "sample_meanings",
    "splits",
]

LANGUAGES: tuple[str, ...] = ("en", "de", "es", "ru", "hi", "ar", "zh")
SCRIPTS: dict[str, str] = {
    "en": "Latin",
    "de": "Latin",
    "es": "Latin",
    "ru": "Cyrillic",
    "hi": "Devanagari",
    "ar": "Arabic",
    "zh": "Han",
}

# =============================================================================================
# Lexicon. One row per concept, one entry per language; "|" separates stored forms.
# =============================================================================================

# Agents: "g" is the grammatical gender (verb/adjective agreement in hi, ar; "one"/"two" in ru).
# ru = nominative|genitive (the genitive is needed for "У Анны есть ..." = "Anna has ...").
# Roles are lower case; a sentence's first letter is capitalised when it is assembled.
_NAMES: dict[str, dict[str, str]] = {
    "anna": {
        "g": "f",
        "en": "Anna",
        "de": "Anna",
        "es": "Ana",
        "ru": "Анна|Анны",
        "hi": "अन्ना",
        "ar": "آنا",
        "zh": "安娜",
    },
    "maria": {
        "g": "f",
        "en": "Maria",
        "de": "Maria",
        "es": "María",
        "ru": "Мария|Марии",
        "hi": "मारिया",
        "ar": "ماريا",
        "zh": "玛丽亚",
    },
    "leila": {
        "g": "f",
        "en": "Leila",
        "de": "Leila",
        "es": "Leila",
        "ru": "Лейла|Лейлы",
        "hi": "लैला",
        "ar": "ليلى",
        "zh": "莱拉",
    },
    "sara": {
        "g": "f",
        "en": "Sara",
        "de": "Sara",
        "es": "Sara",
        "ru": "Сара|Сары",
        "hi": "सारा",
        "ar": "سارة",
        "zh": "萨拉",
    },
    "nina": {
        "g": "f",
        "en": "Nina",
        "de": "Nina",
        "es": "Nina",
        "ru": "Нина|Нины",
        "hi": "नीना",
        "ar": "نينا",
        "zh": "妮娜",
    },
    "elena": {
        "g": "f",
        "en": "Elena",
        "de": "Elena",
        "es": "Elena",
        "ru": "Елена|Елены",
        "hi": "एलेना",
        "ar": "إيلينا",
        "zh": "埃莱娜",
    },
    "lina": {
        "g": "f",
        "en": "Lina",
        "de": "Lina",
        "es": "Lina",
        "ru": "Лина|Лины",
        "hi": "लीना",
        "ar": "لينا",
        "zh": "莉娜",
    },
    "mila": {
        "g": "f",
        "en": "Mila",
        "de": "Mila",
        "es": "Mila",
        "ru": "Мила|Милы",
        "hi": "मिला",
        "ar": "ميلا",
        "zh": "米拉",
    },
    "omar": {
        "g": "m",
        "en": "Omar",
        "de": "Omar",
        "es": "Omar",
        "ru": "Омар|Омара",
        "hi": "उमर",
        "ar": "عمر",
        "zh": "奥马尔",
    },
    "david": {
        "g": "m",
        "en": "David",
        "de": "David",
        "es": "David",
        "ru": "Давид|Давида",
        "hi": "डेविड",
        "ar": "ديفيد",
        "zh": "大卫",
    },
    "pablo": {
        "g": "m",
        "en": "Pablo",
        "de": "Pablo",
        "es": "Pablo",
        "ru": "Пабло|Пабло",
        "hi": "पाब्लो",
        "ar": "بابلو",
        "zh": "巴勃罗",
    },
    "karim": {
        "g": "m",
        "en": "Karim",
        "de": "Karim",
        "es": "Karim",
        "ru": "Карим|Карима",
        "hi": "करीम",
        "ar": "كريم",
        "zh": "卡里姆",
    },
    "tom": {"g": "m", "en": "Tom", "de": "Tom", "es": "Tom", "ru": "Том|Тома", "hi": "टॉम", "ar": "توم", "zh": "汤姆"},
    "max": {
        "g": "m",
        "en": "Max",
        "de": "Max",
        "es": "Max",
        "ru": "Макс|Макса",
        "hi": "मैक्स",
        "ar": "ماكس",
        "zh": "马克斯",
    },
    "ravi": {
        "g": "m",
        "en": "Ravi",
        "de": "Ravi",
        "es": "Ravi",
        "ru": "Рави|Рави",
        "hi": "रवि",
        "ar": "رافي",
        "zh": "拉维",
    },
    "adam": {
        "g": "m",
        "en": "Adam",
        "de": "Adam",
        "es": "Adam",
        "ru": "Адам|Адама",
        "hi": "आदम",
        "ar": "آدم",
        "zh": "亚当",
    },
}
_ROLES: dict[str, dict[str, str]] = {
    "teacher": {
        "g": "m",
        "en": "the teacher",
        "de": "der Lehrer",
        "es": "el maestro",
        "ru": "учитель|учителя",
        "hi": "अध्यापक",
        "ar": "المعلم",
        "zh": "老师",
    },
    "doctor": {
        "g": "f",
        "en": "the doctor",
        "de": "die Ärztin",
        "es": "la doctora",
        "ru": "врач|врача",
        "hi": "डॉक्टर",
        "ar": "الطبيبة",
        "zh": "医生",
    },
    "farmer": {
        "g": "m",
        "en": "the farmer",
        "de": "der Bauer",
        "es": "el granjero",
        "ru": "фермер|фермера",
        "hi": "किसान",
        "ar": "المزارع",
        "zh": "农民",
    },
    "student": {
        "g": "f",
        "en": "the student",
        "de": "die Studentin",
        "es": "la estudiante",
        "ru": "студентка|студентки",
        "hi": "छात्रा",
        "ar": "الطالبة",
        "zh": "学生",
    },
    "driver": {
        "g": "m",
        "en": "the driver",
        "de": "der Fahrer",
        "es": "el conductor",
        "ru": "водитель|водителя",
        "hi": "ड्राइवर",
        "ar": "السائق",
        "zh": "司机",
    },
    "baker": {
        "g": "m",
        "en": "the baker",
        "de": "der Bäcker",
        "es": "el panadero",
        "ru": "пекарь|пекаря",
        "hi": "नानबाई",
        "ar": "الخباز",
        "zh": "面包师",
    },
    "nurse": {
        "g": "f",
        "en": "the nurse",
        "de": "die Krankenschwester",
        "es": "la enfermera",
        "ru": "медсестра|медсестры",
        "hi": "नर्स",
        "ar": "الممرضة",
        "zh": "护士",
    },
    "singer": {
        "g": "f",
        "en": "the singer",
        "de": "die Sängerin",
        "es": "la cantante",
        "ru": "певица|певицы",
        "hi": "गायिका",
        "ar": "المغنية",
        "zh": "歌手",
    },
}
_AGENTS: dict[str, dict[str, str]] = {**_NAMES, **_ROLES}

# Nouns. "tags" say which verbs can take the noun (see _VERBS "takes").
#   en: singular|plural            de: gender|singular|plural          es: gender|singular|plural
#   ru: gender|nom|acc|gen sg|nom pl|gen pl  (gender "ma" = masculine animate: acc = gen)
#   hi: gender|singular|plural[|oblique singular, for animals marked with को]
#   ar: gender|singular|dual|plural (indefinite; the definite adds ال)      zh: noun|classifier
_NOUNS: dict[str, dict[str, str]] = {
    "apple": {
        "tags": "F P W T",
        "en": "apple|apples",
        "de": "m|Apfel|Äpfel",
        "es": "f|manzana|manzanas",
        "ru": "n|яблоко|яблоко|яблока|яблоки|яблок",
        "hi": "m|सेब|सेब",
        "ar": "f|تفاحة|تفاحتان|تفاحات",
        "zh": "苹果|个",
    },
    "banana": {
        "tags": "F P",
        "en": "banana|bananas",
        "de": "f|Banane|Bananen",
        "es": "m|plátano|plátanos",
        "ru": "m|банан|банан|банана|бананы|бананов",
        "hi": "m|केला|केले",
        "ar": "f|موزة|موزتان|موزات",
        "zh": "香蕉|根",
    },
    "egg": {
        "tags": "F P K T",
        "en": "egg|eggs",
        "de": "n|Ei|Eier",
        "es": "m|huevo|huevos",
        "ru": "n|яйцо|яйцо|яйца|яйца|яиц",
        "hi": "m|अंडा|अंडे",
        "ar": "f|بيضة|بيضتان|بيضات",
        "zh": "鸡蛋|个",
    },
    "cake": {
        "tags": "F P",
        "en": "cake|cakes",
        "de": "m|Kuchen|Kuchen",
        "es": "m|pastel|pasteles",
        "ru": "m|торт|торт|торта|торты|тортов",
        "hi": "m|केक|केक",
        "ar": "f|كعكة|كعكتان|كعكات",
        "zh": "蛋糕|块",
    },
    "pear": {
        "tags": "F P W",
        "en": "pear|pears",
        "de": "f|Birne|Birnen",
        "es": "f|pera|peras",
        "ru": "f|груша|грушу|груши|груши|груш",
        "hi": "f|नाशपाती|नाशपातियाँ",
        "ar": "f|إجاصة|إجاصتان|إجاصات",
        "zh": "梨|个",
    },
    "lemon": {
        "tags": "F P W T",
        "en": "lemon|lemons",
        "de": "f|Zitrone|Zitronen",
        "es": "m|limón|limones",
        "ru": "m|лимон|лимон|лимона|лимоны|лимонов",
        "hi": "m|नींबू|नींबू",
        "ar": "f|ليمونة|ليمونتان|ليمونات",
        "zh": "柠檬|个",
    },
    "peach": {
        "tags": "F P W",
        "en": "peach|peaches",
        "de": "m|Pfirsich|Pfirsiche",
        "es": "m|melocotón|melocotones",
        "ru": "m|персик|персик|персика|персики|персиков",
        "hi": "m|आड़ू|आड़ू",
        "ar": "f|خوخة|خوختان|خوخات",
        "zh": "桃子|个",
    },
    "orange": {
        "tags": "F P W T",
        "en": "orange|oranges",
        "de": "f|Orange|Orangen",
        "es": "f|naranja|naranjas",
        "ru": "m|апельсин|апельсин|апельсина|апельсины|апельсинов",
        "hi": "m|संतरा|संतरे",
        "ar": "f|برتقالة|برتقالتان|برتقالات",
        "zh": "橙子|个",
    },
    "carrot": {
        "tags": "F P W K",
        "en": "carrot|carrots",
        "de": "f|Karotte|Karotten",
        "es": "f|zanahoria|zanahorias",
        "ru": "f|морковка|морковку|морковки|морковки|морковок",
        "hi": "f|गाजर|गाजरें",
        "ar": "f|جزرة|جزرتان|جزرات",
        "zh": "胡萝卜|根",
    },
    "cucumber": {
        "tags": "F P W",
        "en": "cucumber|cucumbers",
        "de": "f|Gurke|Gurken",
        "es": "m|pepino|pepinos",
        "ru": "m|огурец|огурец|огурца|огурцы|огурцов",
        "hi": "m|खीरा|खीरे",
        "ar": "f|خيارة|خيارتان|خيارات",
        "zh": "黄瓜|根",
    },
    "onion": {
        "tags": "F P K",
        "en": "onion|onions",
        "de": "f|Zwiebel|Zwiebeln",
        "es": "f|cebolla|cebollas",
        "ru": "f|луковица|луковицу|луковицы|луковицы|луковиц",
        "hi": "m|प्याज़|प्याज़",
        "ar": "f|بصلة|بصلتان|بصلات",
        "zh": "洋葱|个",
    },
    "book": {
        "tags": "P R O Q",
        "en": "book|books",
        "de": "n|Buch|Bücher",
        "es": "m|libro|libros",
        "ru": "f|книга|книгу|книги|книги|книг",
        "hi": "f|किताब|किताबें",
        "ar": "m|كتاب|كتابان|كتب",
        "zh": "书|本",
    },
    "letter": {
        "tags": "P R X O",
        "en": "letter|letters",
        "de": "m|Brief|Briefe",
        "es": "f|carta|cartas",
        "ru": "n|письмо|письмо|письма|письма|писем",
        "hi": "f|चिट्ठी|चिट्ठियाँ",
        "ar": "f|رسالة|رسالتان|رسائل",
        "zh": "信|封",
    },
    "newspaper": {
        "tags": "P R",
        "en": "newspaper|newspapers",
        "de": "f|Zeitung|Zeitungen",
        "es": "m|periódico|periódicos",
        "ru": "f|газета|газету|газеты|газеты|газет",
        "hi": "m|अख़बार|अख़बार",
        "ar": "f|جريدة|جريدتان|جرائد",
        "zh": "报纸|份",
    },
    "map": {
        "tags": "P R",
        "en": "map|maps",
        "de": "f|Landkarte|Landkarten",
        "es": "m|mapa|mapas",
        "ru": "f|карта|карту|карты|карты|карт",
        "hi": "m|नक्शा|नक्शे",
        "ar": "f|خريطة|خريطتان|خرائط",
        "zh": "地图|张",
    },
    "postcard": {
        "tags": "P R X",
        "en": "postcard|postcards",
        "de": "f|Postkarte|Postkarten",
        "es": "f|postal|postales",
        "ru": "f|открытка|открытку|открытки|открытки|открыток",
        "hi": "m|पोस्टकार्ड|पोस्टकार्ड",
        "ar": "f|بطاقة|بطاقتان|بطاقات",
        "zh": "明信片|张",
    },
    "notebook": {
        "tags": "P O Q",
        "en": "notebook|notebooks",
        "de": "n|Heft|Hefte",
        "es": "m|cuaderno|cuadernos",
        "ru": "f|тетрадь|тетрадь|тетради|тетради|тетрадей",
        "hi": "f|कॉपी|कॉपियाँ",
        "ar": "m|دفتر|دفتران|دفاتر",
        "zh": "笔记本|本",
    },
    "bag": {
        "tags": "P O Q M L",
        "en": "bag|bags",
        "de": "f|Tasche|Taschen",
        "es": "m|bolso|bolsos",
        "ru": "f|сумка|сумку|сумки|сумки|сумок",
        "hi": "m|थैला|थैले",
        "ar": "f|حقيبة|حقيبتان|حقائب",
        "zh": "包|个",
    },
    "box": {
        "tags": "P O Q C",
        "en": "box|boxes",
        "de": "f|Kiste|Kisten",
        "es": "f|caja|cajas",
        "ru": "f|коробка|коробку|коробки|коробки|коробок",
        "hi": "m|डिब्बा|डिब्बे",
        "ar": "m|صندوق|صندوقان|صناديق",
        "zh": "盒子|个",
    },
    "chair": {
        "tags": "P C M L",
        "en": "chair|chairs",
        "de": "m|Stuhl|Stühle",
        "es": "f|silla|sillas",
        "ru": "m|стул|стул|стула|стулья|стульев",
        "hi": "f|कुर्सी|कुर्सियाँ",
        "ar": "m|كرسي|كرسيان|كراسي",
        "zh": "椅子|把",
    },
    "table": {
        "tags": "C M L",
        "en": "table|tables",
        "de": "m|Tisch|Tische",
        "es": "f|mesa|mesas",
        "ru": "m|стол|стол|стола|столы|столов",
        "hi": "f|मेज़|मेज़ें",
        "ar": "f|طاولة|طاولتان|طاولات",
        "zh": "桌子|张",
    },
    "cup": {
        "tags": "P W L",
        "en": "cup|cups",
        "de": "f|Tasse|Tassen",
        "es": "f|taza|tazas",
        "ru": "f|чашка|чашку|чашки|чашки|чашек",
        "hi": "m|कप|कप",
        "ar": "m|فنجان|فنجانان|فناجين",
        "zh": "杯子|个",
    },
    "bottle": {
        "tags": "P W O Q T",
        "en": "bottle|bottles",
        "de": "f|Flasche|Flaschen",
        "es": "f|botella|botellas",
        "ru": "f|бутылка|бутылку|бутылки|бутылки|бутылок",
        "hi": "f|बोतल|बोतलें",
        "ar": "f|زجاجة|زجاجتان|زجاجات",
        "zh": "瓶子|个",
    },
    "key": {
        "tags": "P T",
        "en": "key|keys",
        "de": "m|Schlüssel|Schlüssel",
        "es": "f|llave|llaves",
        "ru": "m|ключ|ключ|ключа|ключи|ключей",
        "hi": "f|चाबी|चाबियाँ",
        "ar": "m|مفتاح|مفتاحان|مفاتيح",
        "zh": "钥匙|把",
    },
    "phone": {
        "tags": "P M L",
        "en": "phone|phones",
        "de": "n|Telefon|Telefone",
        "es": "m|teléfono|teléfonos",
        "ru": "m|телефон|телефон|телефона|телефоны|телефонов",
        "hi": "m|फ़ोन|फ़ोन",
        "ar": "m|هاتف|هاتفان|هواتف",
        "zh": "手机|部",
    },
    "lamp": {
        "tags": "P C M L",
        "en": "lamp|lamps",
        "de": "f|Lampe|Lampen",
        "es": "f|lámpara|lámparas",
        "ru": "f|лампа|лампу|лампы|лампы|ламп",
        "hi": "m|लैंप|लैंप",
        "ar": "m|مصباح|مصباحان|مصابيح",
        "zh": "灯|盏",
    },
    "ball": {
        "tags": "P T W",
        "en": "ball|balls",
        "de": "m|Ball|Bälle",
        "es": "f|pelota|pelotas",
        "ru": "m|мяч|мяч|мяча|мячи|мячей",
        "hi": "f|गेंद|गेंदें",
        "ar": "f|كرة|كرتان|كرات",
        "zh": "球|个",
    },
    "hat": {
        "tags": "P T W",
        "en": "hat|hats",
        "de": "m|Hut|Hüte",
        "es": "m|sombrero|sombreros",
        "ru": "f|шляпа|шляпу|шляпы|шляпы|шляп",
        "hi": "f|टोपी|टोपियाँ",
        "ar": "f|قبعة|قبعتان|قبعات",
        "zh": "帽子|顶",
    },
    "shirt": {
        "tags": "P W",
        "en": "shirt|shirts",
        "de": "n|Hemd|Hemden",
        "es": "f|camisa|camisas",
        "ru": "f|рубашка|рубашку|рубашки|рубашки|рубашек",
        "hi": "f|कमीज़|कमीज़ें",
        "ar": "m|قميص|قميصان|قمصان",
        "zh": "衬衫|件",
    },
    "bicycle": {
        "tags": "P C M W L",
        "en": "bicycle|bicycles",
        "de": "n|Fahrrad|Fahrräder",
        "es": "f|bicicleta|bicicletas",
        "ru": "m|велосипед|велосипед|велосипеда|велосипеды|велосипедов",
        "hi": "f|साइकिल|साइकिलें",
        "ar": "f|دراجة|دراجتان|دراجات",
        "zh": "自行车|辆",
    },
    "car": {
        "tags": "V C M W L",
        "en": "car|cars",
        "de": "n|Auto|Autos",
        "es": "m|coche|coches",
        "ru": "f|машина|машину|машины|машины|машин",
        "hi": "f|गाड़ी|गाड़ियाँ",
        "ar": "f|سيارة|سيارتان|سيارات",
        "zh": "汽车|辆",
    },
    "umbrella": {
        "tags": "P O Q M",
        "en": "umbrella|umbrellas",
        "de": "m|Regenschirm|Regenschirme",
        "es": "m|paraguas|paraguas",
        "ru": "m|зонт|зонт|зонта|зонты|зонтов",
        "hi": "m|छाता|छाते",
        "ar": "f|مظلة|مظلتان|مظلات",
        "zh": "伞|把",
    },
    "basket": {
        "tags": "P C",
        "en": "basket|baskets",
        "de": "m|Korb|Körbe",
        "es": "f|cesta|cestas",
        "ru": "f|корзина|корзину|корзины|корзины|корзин",
        "hi": "f|टोकरी|टोकरियाँ",
        "ar": "f|سلة|سلتان|سلال",
        "zh": "篮子|个",
    },
    "plate": {
        "tags": "P W L C",
        "en": "plate|plates",
        "de": "m|Teller|Teller",
        "es": "m|plato|platos",
        "ru": "f|тарелка|тарелку|тарелки|тарелки|тарелок",
        "hi": "f|थाली|थालियाँ",
        "ar": "m|طبق|طبقان|أطباق",
        "zh": "盘子|个",
    },
    "door": {
        "tags": "O Q C M W L",
        "en": "door|doors",
        "de": "f|Tür|Türen",
        "es": "f|puerta|puertas",
        "ru": "f|дверь|дверь|двери|двери|дверей",
        "hi": "m|दरवाज़ा|दरवाज़े",
        "ar": "m|باب|بابان|أبواب",
        "zh": "门|扇",
    },
    "window": {
        "tags": "O Q W M L",
        "en": "window|windows",
        "de": "n|Fenster|Fenster",
        "es": "f|ventana|ventanas",
        "ru": "n|окно|окно|окна|окна|окон",
        "hi": "f|खिड़की|खिड़कियाँ",
        "ar": "f|نافذة|نافذتان|نوافذ",
        "zh": "窗户|扇",
    },
    "picture": {
        "tags": "P C",
        "en": "picture|pictures",
        "de": "n|Bild|Bilder",
        "es": "m|cuadro|cuadros",
        "ru": "f|картина|картину|картины|картины|картин",
        "hi": "f|तस्वीर|तस्वीरें",
        "ar": "f|صورة|صورتان|صور",
        "zh": "画|幅",
    },
    "mirror": {
        "tags": "P L",
        "en": "mirror|mirrors",
        "de": "m|Spiegel|Spiegel",
        "es": "m|espejo|espejos",
        "ru": "n|зеркало|зеркало|зеркала|зеркала|зеркал",
        "hi": "m|शीशा|शीशे",
        "ar": "f|مرآة|مرآتان|مرايا",
        "zh": "镜子|面",
    },
    "spoon": {
        "tags": "P W L T",
        "en": "spoon|spoons",
        "de": "m|Löffel|Löffel",
        "es": "f|cuchara|cucharas",
        "ru": "f|ложка|ложку|ложки|ложки|ложек",
        "hi": "m|चम्मच|चम्मच",
        "ar": "f|ملعقة|ملعقتان|ملاعق",
        "zh": "勺子|把",
    },
    "dog": {
        "tags": "A W",
        "en": "dog|dogs",
        "de": "m|Hund|Hunde",
        "es": "m|perro|perros",
        "ru": "f|собака|собаку|собаки|собаки|собак",
        "hi": "m|कुत्ता|कुत्ते|कुत्ते",
        "ar": "m|كلب|كلبان|كلاب",
        "zh": "狗|只",
    },
    "cat": {
        "tags": "A W",
        "en": "cat|cats",
        "de": "f|Katze|Katzen",
        "es": "m|gato|gatos",
        "ru": "f|кошка|кошку|кошки|кошки|кошек",
        "hi": "f|बिल्ली|बिल्लियाँ|बिल्ली",
        "ar": "f|قطة|قطتان|قطط",
        "zh": "猫|只",
    },
    "horse": {
        "tags": "A W",
        "en": "horse|horses",
        "de": "n|Pferd|Pferde",
        "es": "m|caballo|caballos",
        "ru": "f|лошадь|лошадь|лошади|лошади|лошадей",
        "hi": "m|घोड़ा|घोड़े|घोड़े",
        "ar": "m|حصان|حصانان|أحصنة",
        "zh": "马|匹",
    },
    "bird": {
        "tags": "A",
        "en": "bird|birds",
        "de": "m|Vogel|Vögel",
        "es": "m|pájaro|pájaros",
        "ru": "f|птица|птицу|птицы|птицы|птиц",
        "hi": "f|चिड़िया|चिड़ियाँ|चिड़िया",
        "ar": "m|طائر|طائران|طيور",
        "zh": "鸟|只",
    },
    "rabbit": {
        "tags": "A",
        "en": "rabbit|rabbits",
        "de": "n|Kaninchen|Kaninchen",
        "es": "m|conejo|conejos",
        "ru": "ma|кролик|кролика|кролика|кролики|кроликов",
        "hi": "m|खरगोश|खरगोश|खरगोश",
        "ar": "m|أرنب|أرنبان|أرانب",
        "zh": "兔子|只",
    },
}

# Verbs, 3rd person singular present. "takes": noun tags the verb accepts ("*" = any noun). Tags:
# F food, P portable, V vehicle, A animal, R readable, X writable, W washable, K cookable,
# O openable, Q closable, C paintable, M repairable, L cleanable, T throwable.
#   en: 3sg|base   hi: stem (+ता/ती है; a multi-word stem puts नहीं before its last word)
#   ar: masculine imperfect (the feminine swaps the leading ي for ت), optionally + preposition
_VERBS: dict[str, dict[str, str]] = {
    "eat": {
        "takes": "F",
        "en": "eats|eat",
        "de": "isst",
        "es": "come",
        "ru": "ест",
        "hi": "खा",
        "ar": "يأكل",
        "zh": "吃",
    },
    "buy": {
        "takes": "P V A",
        "en": "buys|buy",
        "de": "kauft",
        "es": "compra",
        "ru": "покупает",
        "hi": "खरीद",
        "ar": "يشتري",
        "zh": "买",
    },
    "sell": {
        "takes": "P V A",
        "en": "sells|sell",
        "de": "verkauft",
        "es": "vende",
        "ru": "продаёт",
        "hi": "बेच",
        "ar": "يبيع",
        "zh": "卖",
    },
    "read": {
        "takes": "R",
        "en": "reads|read",
        "de": "liest",
        "es": "lee",
        "ru": "читает",
        "hi": "पढ़",
        "ar": "يقرأ",
        "zh": "读",
    },
    "write": {
        "takes": "X",
        "en": "writes|write",
        "de": "schreibt",
        "es": "escribe",
        "ru": "пишет",
        "hi": "लिख",
        "ar": "يكتب",
        "zh": "写",
    },
    "see": {
        "takes": "*",
        "en": "sees|see",
        "de": "sieht",
        "es": "ve",
        "ru": "видит",
        "hi": "देख",
        "ar": "يرى",
        "zh": "看",
    },
    "carry": {
        "takes": "P",
        "en": "carries|carry",
        "de": "trägt",
        "es": "lleva",
        "ru": "несёт",
        "hi": "उठा",
        "ar": "يحمل",
        "zh": "提",
    },
    "wash": {
        "takes": "W",
        "en": "washes|wash",
        "de": "wäscht",
        "es": "lava",
        "ru": "моет",
        "hi": "धो",
        "ar": "يغسل",
        "zh": "洗",
    },
    "cut": {
        "takes": "F",
        "en": "cuts|cut",
        "de": "schneidet",
        "es": "corta",
        "ru": "режет",
        "hi": "काट",
        "ar": "يقطع",
        "zh": "切",
    },
    "cook": {
        "takes": "K",
        "en": "cooks|cook",
        "de": "kocht",
        "es": "cocina",
        "ru": "варит",
        "hi": "पका",
        "ar": "يطبخ",
        "zh": "煮",
    },
    "feed": {
        "takes": "A",
        "en": "feeds|feed",
        "de": "füttert",
        "es": "alimenta",
        "ru": "кормит",
        "hi": "खिला",
        "ar": "يطعم",
        "zh": "喂",
    },
    "open": {
        "takes": "O",
        "en": "opens|open",
        "de": "öffnet",
        "es": "abre",
        "ru": "открывает",
        "hi": "खोल",
        "ar": "يفتح",
        "zh": "打开",
    },
    "close": {
        "takes": "Q",
        "en": "closes|close",
        "de": "schließt",
        "es": "cierra",
        "ru": "закрывает",
        "hi": "बंद कर",
        "ar": "يغلق",
        "zh": "关上",
    },
    "paint": {
        "takes": "C",
        "en": "paints|paint",
        "de": "streicht",
        "es": "pinta",
        "ru": "красит",
        "hi": "रंग",
        "ar": "يدهن",
        "zh": "刷",
    },
    "repair": {
        "takes": "M",
        "en": "repairs|repair",
        "de": "repariert",
        "es": "repara",
        "ru": "чинит",
        "hi": "ठीक कर",
        "ar": "يصلح",
        "zh": "修理",
    },
    "clean": {
        "takes": "L",
        "en": "cleans|clean",
        "de": "putzt",
        "es": "limpia",
        "ru": "чистит",
        "hi": "साफ़ कर",
        "ar": "ينظف",
        "zh": "擦",
    },
    "search": {
        "takes": "*",
        "en": "looks for|look for",
        "de": "sucht",
        "es": "busca",
        "ru": "ищет",
        "hi": "ढूँढ",
        "ar": "يبحث عن",
        "zh": "找",
    },
    "want": {
        "takes": "P V",
        "en": "wants|want",
        "de": "will",
        "es": "quiere",
        "ru": "хочет",
        "hi": "चाह",
        "ar": "يريد",
        "zh": "想要",
    },
    "hold": {
        "takes": "P",
        "en": "holds|hold",
        "de": "hält",
        "es": "sostiene",
        "ru": "держит",
        "hi": "पकड़",
        "ar": "يمسك",
        "zh": "拿着",
    },
    "take": {
        "takes": "P",
        "en": "takes|take",
        "de": "nimmt",
        "es": "toma",
        "ru": "берёт",
        "hi": "ले",
        "ar": "يأخذ",
        "zh": "拿",
    },
    "throw": {
        "takes": "T",
        "en": "throws|throw",
        "de": "wirft",
        "es": "lanza",
        "ru": "бросает",
        "hi": "फेंक",
        "ar": "يرمي",
        "zh": "扔",
    },
    "hide": {
        "takes": "P",
        "en": "hides|hide",
        "de": "versteckt",
        "es": "esconde",
        "ru": "прячет",
        "hi": "छिपा",
        "ar": "يخفي",
        "zh": "藏",
    },
}

# Adjectives, in the forms an object noun phrase needs.
#   de: stem (weak accusative ending added: -en masculine, -e otherwise)    es: masculine|feminine
#   ru: accusative masculine|feminine|neuter|masculine animate     hi: masc direct|masc oblique|feminine
#   ar: masculine|feminine (indefinite)                             zh: attributive form
_ADJECTIVES: dict[str, dict[str, str]] = {
    "red": {
        "en": "red",
        "de": "rot",
        "es": "rojo|roja",
        "ru": "красный|красную|красное|красного",
        "hi": "लाल|लाल|लाल",
        "ar": "أحمر|حمراء",
        "zh": "红色的",
    },
    "blue": {
        "en": "blue",
        "de": "blau",
        "es": "azul|azul",
        "ru": "синий|синюю|синее|синего",
        "hi": "नीला|नीले|नीली",
        "ar": "أزرق|زرقاء",
        "zh": "蓝色的",
    },
    "green": {
        "en": "green",
        "de": "grün",
        "es": "verde|verde",
        "ru": "зелёный|зелёную|зелёное|зелёного",
        "hi": "हरा|हरे|हरी",
        "ar": "أخضر|خضراء",
        "zh": "绿色的",
    },
    "yellow": {
        "en": "yellow",
        "de": "gelb",
        "es": "amarillo|amarilla",
        "ru": "жёлтый|жёлтую|жёлтое|жёлтого",
        "hi": "पीला|पीले|पीली",
        "ar": "أصفر|صفراء",
        "zh": "黄色的",
    },
    "white": {
        "en": "white",
        "de": "weiß",
        "es": "blanco|blanca",
        "ru": "белый|белую|белое|белого",
        "hi": "सफ़ेद|सफ़ेद|सफ़ेद",
        "ar": "أبيض|بيضاء",
        "zh": "白色的",
    },
    "black": {
        "en": "black",
        "de": "schwarz",
        "es": "negro|negra",
        "ru": "чёрный|чёрную|чёрное|чёрного",
        "hi": "काला|काले|काली",
        "ar": "أسود|سوداء",
        "zh": "黑色的",
    },
    "big": {
        "en": "big",
        "de": "groß",
        "es": "grande|grande",
        "ru": "большой|большую|большое|большого",
        "hi": "बड़ा|बड़े|बड़ी",
        "ar": "كبير|كبيرة",
        "zh": "大的",
    },
    "small": {
        "en": "small",
        "de": "klein",
        "es": "pequeño|pequeña",
        "ru": "маленький|маленькую|маленькое|маленького",
        "hi": "छोटा|छोटे|छोटी",
        "ar": "صغير|صغيرة",
        "zh": "小的",
    },
    "new": {
        "en": "new",
        "de": "neu",
        "es": "nuevo|nueva",
        "ru": "новый|новую|новое|нового",
        "hi": "नया|नए|नई",
        "ar": "جديد|جديدة",
        "zh": "新的",
    },
    "old": {
        "en": "old",
        "de": "alt",
        "es": "viejo|vieja",
        "ru": "старый|старую|старое|старого",
        "hi": "पुराना|पुराने|पुरानी",
        "ar": "قديم|قديمة",
        "zh": "旧的",
    },
    "beautiful": {
        "en": "beautiful",
        "de": "schön",
        "es": "bonito|bonita",
        "ru": "красивый|красивую|красивое|красивого",
        "hi": "सुंदर|सुंदर|सुंदर",
        "ar": "جميل|جميلة",
        "zh": "漂亮的",
    },
    "cheap": {
        "en": "cheap",
        "de": "billig",
        "es": "barato|barata",
        "ru": "дешёвый|дешёвую|дешёвое|дешёвого",
        "hi": "सस्ता|सस्ते|सस्ती",
        "ar": "رخيص|رخيصة",
        "zh": "便宜的",
    },
    "heavy": {
        "en": "heavy",
        "de": "schwer",
        "es": "pesado|pesada",
        "ru": "тяжёлый|тяжёлую|тяжёлое|тяжёлого",
        "hi": "भारी|भारी|भारी",
        "ar": "ثقيل|ثقيلة",
        "zh": "重的",
    },
    "dirty": {
        "en": "dirty",
        "de": "schmutzig",
        "es": "sucio|sucia",
        "ru": "грязный|грязную|грязное|грязного",
        "hi": "गंदा|गंदे|गंदी",
        "ar": "متسخ|متسخة",
        "zh": "脏的",
    },
    "round": {
        "en": "round",
        "de": "rund",
        "es": "redondo|redonda",
        "ru": "круглый|круглую|круглое|круглого",
        "hi": "गोल|गोल|गोल",
        "ar": "مستدير|مستديرة",
        "zh": "圆的",
    },
    "soft": {
        "en": "soft",
        "de": "weich",
        "es": "blando|blanda",
        "ru": "мягкий|мягкую|мягкое|мягкого",
        "hi": "नरम|नरम|नरम",
        "ar": "ناعم|ناعمة",
        "zh": "软的",
    },
}

# Places, as the locative phrase that answers "where?" (zh includes 在).
_PLACES: dict[str, dict[str, str]] = {
    "park": {
        "en": "in the park",
        "de": "im Park",
        "es": "en el parque",
        "ru": "в парке",
        "hi": "पार्क में",
        "ar": "في المتنزه",
        "zh": "在公园",
    },
    "school": {
        "en": "at school",
        "de": "in der Schule",
        "es": "en la escuela",
        "ru": "в школе",
        "hi": "स्कूल में",
        "ar": "في المدرسة",
        "zh": "在学校",
    },
    "market": {
        "en": "at the market",
        "de": "auf dem Markt",
        "es": "en el mercado",
        "ru": "на рынке",
        "hi": "बाज़ार में",
        "ar": "في السوق",
        "zh": "在市场",
    },
    "library": {
        "en": "in the library",
        "de": "in der Bibliothek",
        "es": "en la biblioteca",
        "ru": "в библиотеке",
        "hi": "पुस्तकालय में",
        "ar": "في المكتبة",
        "zh": "在图书馆",
    },
    "kitchen": {
        "en": "in the kitchen",
        "de": "in der Küche",
        "es": "en la cocina",
        "ru": "на кухне",
        "hi": "रसोई में",
        "ar": "في المطبخ",
        "zh": "在厨房",
    },
    "garden": {
        "en": "in the garden",
        "de": "im Garten",
        "es": "en el jardín",
        "ru": "в саду",
        "hi": "बगीचे में",
        "ar": "في البستان",
        "zh": "在花园",
    },
    "station": {
        "en": "at the station",
        "de": "am Bahnhof",
        "es": "en la estación",
        "ru": "на вокзале",
        "hi": "स्टेशन पर",
        "ar": "في المحطة",
        "zh": "在车站",
    },
    "office": {
        "en": "at the office",
        "de": "im Büro",
        "es": "en la oficina",
        "ru": "в офисе",
        "hi": "दफ़्तर में",
        "ar": "في المكتب",
        "zh": "在办公室",
    },
    "hospital": {
        "en": "at the hospital",
        "de": "im Krankenhaus",
        "es": "en el hospital",
        "ru": "в больнице",
        "hi": "अस्पताल में",
        "ar": "في المستشفى",
        "zh": "在医院",
    },
    "beach": {
        "en": "on the beach",
        "de": "am Strand",
        "es": "en la playa",
        "ru": "на пляже",
        "hi": "समुद्र तट पर",
        "ar": "على الشاطئ",
        "zh": "在海滩",
    },
    "museum": {
        "en": "at the museum",
        "de": "im Museum",
        "es": "en el museo",
        "ru": "в музее",
        "hi": "संग्रहालय में",
        "ar": "في المتحف",
        "zh": "在博物馆",
    },
    "cafe": {
        "en": "at the café",
        "de": "im Café",
        "es": "en la cafetería",
        "ru": "в кафе",
        "hi": "कैफ़े में",
        "ar": "في المقهى",
        "zh": "在咖啡馆",
    },
    "village": {
        "en": "in the village",
        "de": "im Dorf",
        "es": "en el pueblo",
        "ru": "в деревне",
        "hi": "गाँव में",
        "ar": "في القرية",
        "zh": "在村子里",
    },
    "home": {
        "en": "at home",
        "de": "zu Hause",
        "es": "en casa",
        "ru": "дома",
        "hi": "घर पर",
        "ar": "في البيت",
        "zh": "在家",
    },
    "shop": {
        "en": "in the shop",
        "de": "im Laden",
        "es": "en la tienda",
        "ru": "в магазине",
        "hi": "दुकान में",
        "ar": "في المتجر",
        "zh": "在商店",
    },
}

# Times, as the adverbial that answers "when?".
_TIMES: dict[str, dict[str, str]] = {
    "morning": {
        "en": "in the morning",
        "de": "am Morgen",
        "es": "por la mañana",
        "ru": "утром",
        "hi": "सुबह",
        "ar": "في الصباح",
        "zh": "早上",
    },
    "afternoon": {
        "en": "in the afternoon",
        "de": "am Nachmittag",
        "es": "por la tarde",
        "ru": "днём",
        "hi": "दोपहर को",
        "ar": "بعد الظهر",
        "zh": "下午",
    },
    "night": {
        "en": "at night",
        "de": "in der Nacht",
        "es": "por la noche",
        "ru": "ночью",
        "hi": "रात को",
        "ar": "في الليل",
        "zh": "晚上",
    },
    "today": {"en": "today", "de": "heute", "es": "hoy", "ru": "сегодня", "hi": "आज", "ar": "اليوم", "zh": "今天"},
    "monday": {
        "en": "on Monday",
        "de": "am Montag",
        "es": "el lunes",
        "ru": "в понедельник",
        "hi": "सोमवार को",
        "ar": "يوم الاثنين",
        "zh": "星期一",
    },
    "tuesday": {
        "en": "on Tuesday",
        "de": "am Dienstag",
        "es": "el martes",
        "ru": "во вторник",
        "hi": "मंगलवार को",
        "ar": "يوم الثلاثاء",
        "zh": "星期二",
    },
    "wednesday": {
        "en": "on Wednesday",
        "de": "am Mittwoch",
        "es": "el miércoles",
        "ru": "в среду",
        "hi": "बुधवार को",
        "ar": "يوم الأربعاء",
        "zh": "星期三",
    },
    "thursday": {
        "en": "on Thursday",
        "de": "am Donnerstag",
        "es": "el jueves",
        "ru": "в четверг",
        "hi": "गुरुवार को",
        "ar": "يوم الخميس",
        "zh": "星期四",
    },
    "friday": {
        "en": "on Friday",
        "de": "am Freitag",
        "es": "el viernes",
        "ru": "в пятницу",
        "hi": "शुक्रवार को",
        "ar": "يوم الجمعة",
        "zh": "星期五",
    },
    "saturday": {
        "en": "on Saturday",
        "de": "am Samstag",
        "es": "el sábado",
        "ru": "в субботу",
        "hi": "शनिवार को",
        "ar": "يوم السبت",
        "zh": "星期六",
    },
    "sunday": {
        "en": "on Sunday",
        "de": "am Sonntag",
        "es": "el domingo",
        "ru": "в воскресенье",
        "hi": "रविवार को",
        "ar": "يوم الأحد",
        "zh": "星期天",
    },
}

# Number words 1..10. Gender-dependent ones: de/es "one", ru "one"/"two" (keyed by noun gender),
# ar 1..10 (keyed by the noun's gender; 3..10 take the opposite-looking form, as Arabic requires).
_NUMBERS: dict[str, tuple[str, ...]] = {
    "en": ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    "de": ("", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn"),
    "es": ("", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez"),
    "ru": ("", "", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять", "десять"),
    "hi": ("एक", "दो", "तीन", "चार", "पाँच", "छह", "सात", "आठ", "नौ", "दस"),
    "zh": ("一", "两", "三", "四", "五", "六", "七", "八", "九", "十"),
}
_DE_ONE = {"m": "einen", "f": "eine", "n": "ein"}  # accusative, after "hat"
_ES_ONE = {"m": "un", "f": "una"}
_RU_ONE = {"m": "один", "ma": "один", "f": "одна", "n": "одно"}
_RU_TWO = {"m": "два", "ma": "два", "f": "две", "n": "два"}
_AR_NUMBERS = {
    "m": ("واحد", "اثنان", "ثلاثة", "أربعة", "خمسة", "ستة", "سبعة", "ثمانية", "تسعة", "عشرة"),
    "f": ("واحدة", "اثنتان", "ثلاث", "أربع", "خمس", "ست", "سبع", "ثماني", "تسع", "عشر"),
}

_AGENT_KEYS: tuple[str, ...] = tuple(_AGENTS)
_NOUN_KEYS: tuple[str, ...] = tuple(_NOUNS)
_VERB_KEYS: tuple[str, ...] = tuple(_VERBS)
_ADJ_KEYS: tuple[str, ...] = tuple(_ADJECTIVES)
_PLACE_KEYS: tuple[str, ...] = tuple(_PLACES)
_TIME_KEYS: tuple[str, ...] = tuple(_TIMES)
_OBJECTS_FOR: dict[str, tuple[str, ...]] = {
    verb: tuple(
        noun
        for noun, row in _NOUNS.items()
        if entry["takes"] == "*" or set(entry["takes"].split()) & set(row["tags"].split())
    )
    for verb, entry in _VERBS.items()
}

# =============================================================================================
# Meanings
# =============================================================================================

_KINDS = ("action", "located", "have")


@dataclass(frozen=True)
class Meaning:
    """One language-independent fact; `render` turns it into a sentence of any language.

    kind "action":  agent [does not] verb the [adj] obj [place] [time]   (verb must accept obj)
    kind "located": agent [and partner] is/are [not] place [time]
    kind "have":    agent has count obj / has obj (count None) / has no obj (negated)
    Values are lexicon keys (e.g. agent "anna" or "teacher", obj "book", place "park").
    """

    kind: str
    agent: str
    verb: str | None = None
    obj: str | None = None
    adj: str | None = None
    count: int | None = None
    place: str | None = None
    time: str | None = None
    partner: str | None = None
    negated: bool = False

    def __post_init__(self) -> None:
        kind = self.kind
        valid_obj = {
            "action": self.verb in _VERBS and self.obj in _OBJECTS_FOR[self.verb],
            "have": self.obj in _NOUNS,
        }.get(kind, self.obj is None)
        checks = {
            "kind": kind in _KINDS,
            "agent": self.agent in _AGENTS,
            "verb": (self.verb in _VERBS) if kind == "action" else self.verb is None,
            "obj (the verb must accept it)": valid_obj,
            "adj": self.adj is None or (kind == "action" and self.adj in _ADJECTIVES),
            "count": self.count is None or (kind == "have" and not self.negated and 1 <= self.count <= 10),
            "place": (self.place in _PLACES)
            if kind == "located"
            else self.place is None or (kind == "action" and self.place in _PLACES),
            "time": self.time is None or (kind != "have" and self.time in _TIMES),
            "partner": self.partner is None
            or (kind == "located" and self.partner in _AGENTS and self.partner != self.agent),
        }
        problems = [name for name, ok in checks.items() if not ok]
        if problems:
            raise ValueError(f"invalid Meaning ({', '.join(problems)}): {self!r}")


def _maybe(rng: random.Random, keys: Sequence[str], p: float) -> str | None:
    return rng.choice(keys) if rng.random() < p else None


def _sample_meaning(rng: random.Random, agents: Sequence[str] = _AGENT_KEYS) -> Meaning:
    """Draw one meaning whose agent (and partner) come from `agents`."""
    kind = rng.choices(_KINDS, weights=(6, 2, 2))[0]
    agent = rng.choice(agents)
    negated = rng.random() < 0.25
    if kind == "action":
        verb = rng.choice(_VERB_KEYS)
        return Meaning(
            "action",
            agent,
            verb=verb,
            obj=rng.choice(_OBJECTS_FOR[verb]),
            adj=_maybe(rng, _ADJ_KEYS, 0.4),
            place=_maybe(rng, _PLACE_KEYS, 0.5),
            time=_maybe(rng, _TIME_KEYS, 0.5),
            negated=negated,
        )
    if kind == "located":
        others = [a for a in agents if a != agent]
        partner = rng.choice(others) if others and rng.random() < 0.3 else None
        return Meaning(
            "located",
            agent,
            place=rng.choice(_PLACE_KEYS),
            time=_maybe(rng, _TIME_KEYS, 0.5),
            partner=partner,
            negated=negated,
        )
    count = None if negated or rng.random() < 0.25 else rng.randint(1, 10)
    return Meaning("have", agent, obj=rng.choice(_NOUN_KEYS), count=count, negated=negated)


def sample_meanings(n: int, seed: int = 0) -> list[Meaning]:
    """`n` random meanings from `random.Random(seed)`; the same seed always gives the same list."""
    rng = random.Random(seed)
    return [_sample_meaning(rng) for _ in range(n)]


# =============================================================================================
# Grammars: one per language. A statement is a list of segments (text, slot or None); joining
# them remembers where each slot landed, which gives exact QA answer offsets.
# =============================================================================================

_Seg = tuple[str, "str | None"]


def _gender(agent: str) -> str:
    return _AGENTS[agent]["g"]


class _Grammar:
    """Lexicon look-ups shared by every language; subclasses own word order and agreement."""

    lang = ""
    sep = " "  # between words (zh: none)
    end = "."  # after a statement
    qmark = "?"  # after a question
    qprefix = ""  # before a question (es: ¿)
    conj = ""  # "and" between agent and partner

    def forms(self, table: dict[str, dict[str, str]], key: str) -> list[str]:
        return table[key][self.lang].split("|")

    def agent(self, key: str, case: int = 0) -> str:
        return self.forms(_AGENTS, key)[case]

    def subject(self, m: Meaning) -> list[_Seg]:
        segs: list[_Seg] = [(self.agent(m.agent), "agent")]
        if m.partner:
            segs += [(self.conj, None), (self.agent(m.partner), "partner")]
        return segs

    def place(self, m: Meaning) -> _Seg:
        return (self.forms(_PLACES, m.place)[0] if m.place else "", "place")

    def time(self, m: Meaning) -> _Seg:
        return (self.forms(_TIMES, m.time)[0] if m.time else "", "time")

    def statement(self, m: Meaning) -> list[_Seg]:
        return {"action": self.action, "located": self.located, "have": self.have}[m.kind](m)

    # Subclasses implement the three sentence kinds and the questions.
    def action(self, m: Meaning) -> list[_Seg]:
        raise NotImplementedError

    def located(self, m: Meaning) -> list[_Seg]:
        raise NotImplementedError

    def have(self, m: Meaning) -> list[_Seg]:
        raise NotImplementedError

    def question(self, m: Meaning, qtype: str) -> list[str]:
        """Words of a question about `m` (qtype: who/what/where/when/how_many), without the mark."""
        raise NotImplementedError


class _English(_Grammar):
    lang, conj = "en", "and"

    def obj(self, m: Meaning) -> str:
        adj = self.forms(_ADJECTIVES, m.adj)[0] if m.adj else ""
        return " ".join(w for w in ("the", adj, self.forms(_NOUNS, m.obj)[0]) if w)

    def action(self, m):
        v3, base = self.forms(_VERBS, m.verb)
        verb = f"does not {base}" if m.negated else v3
        return self.subject(m) + [(verb, None), (self.obj(m), "obj"), self.place(m), self.time(m)]

    def located(self, m):
        be = "are" if m.partner else "is"
        return self.subject(m) + [(f"{be} not" if m.negated else be, None), self.place(m), self.time(m)]

    def have(self, m):
        sg, pl = self.forms(_NOUNS, m.obj)
        if m.negated:
            return self.subject(m) + [("has no", None), (pl, "obj")]
        if m.count is None:
            return self.subject(m) + [("has", None), (pl, "obj")]
        return self.subject(m) + [
            ("has", None),
            (_NUMBERS["en"][m.count - 1], "count"),
            (sg if m.count == 1 else pl, "obj"),
        ]

    def question(self, m, qtype):
        a = self.agent(m.agent)
        if m.kind == "have":
            return ["How many", self.forms(_NOUNS, m.obj)[1], "does", a, "have"]
        place = self.place(m)[0]
        if m.kind == "located":
            return {"who": ["Who is", place], "where": ["Where is", a], "when": ["When is", a, place]}[qtype]
        v3, base = self.forms(_VERBS, m.verb)
        obj = self.obj(m)
        return {
            "who": ["Who", v3, obj],
            "what": ["What does", a, base],
            "where": ["Where does", a, base, obj],
            "when": ["When does", a, base, obj],
        }[qtype]


class _German(_Grammar):
    lang, conj = "de", "und"

    def obj(self, m: Meaning) -> str:
        gender, sg, _ = self.forms(_NOUNS, m.obj)
        article = {"m": "den", "f": "die", "n": "das"}[gender]
        adj = self.forms(_ADJECTIVES, m.adj)[0] + ("en" if gender == "m" else "e") if m.adj else ""
        return " ".join(w for w in (article, adj, sg) if w)

    def action(self, m):  # S V time O [nicht] place: "Anna liest am Morgen das Buch nicht im Park."
        verb = self.forms(_VERBS, m.verb)[0]
        return self.subject(m) + [
            (verb, None),
            self.time(m),
            (self.obj(m), "obj"),
            ("nicht" if m.negated else "", None),
            self.place(m),
        ]

    def located(self, m):
        return self.subject(m) + [
            ("sind" if m.partner else "ist", None),
            self.time(m),
            ("nicht" if m.negated else "", None),
            self.place(m),
        ]

    def have(self, m):
        gender, sg, pl = self.forms(_NOUNS, m.obj)
        if m.negated:
            return self.subject(m) + [("hat keine", None), (pl, "obj")]
        if m.count is None:
            return self.subject(m) + [("hat", None), (pl, "obj")]
        number = _DE_ONE[gender] if m.count == 1 else _NUMBERS["de"][m.count - 1]
        return self.subject(m) + [("hat", None), (number, "count"), (sg if m.count == 1 else pl, "obj")]

    def question(self, m, qtype):
        a = self.agent(m.agent)
        if m.kind == "have":
            return ["Wie viele", self.forms(_NOUNS, m.obj)[2], "hat", a]
        place = self.place(m)[0]
        if m.kind == "located":
            return {"who": ["Wer ist", place], "where": ["Wo ist", a], "when": ["Wann ist", a, place]}[qtype]
        verb, obj = self.forms(_VERBS, m.verb)[0], self.obj(m)
        return {
            "who": ["Wer", verb, obj],
            "what": ["Was", verb, a],
            "where": ["Wo", verb, a, obj],
            "when": ["Wann", verb, a, obj],
        }[qtype]


class _Spanish(_Grammar):
    lang, conj, qprefix = "es", "y", "¿"

    def obj(self, m: Meaning) -> list[_Seg]:
        """The object noun phrase; animals take the personal "a" (a + el = al), kept out of the slot."""
        gender, sg, _ = self.forms(_NOUNS, m.obj)
        adj = self.forms(_ADJECTIVES, m.adj)[gender == "f"] if m.adj else ""
        np = " ".join(w for w in (sg, adj) if w)
        if "A" not in _NOUNS[m.obj]["tags"]:
            return [(f"{'el' if gender == 'm' else 'la'} {np}", "obj")]
        return [("al", None), (np, "obj")] if gender == "m" else [("a", None), (f"la {np}", "obj")]

    def action(self, m):
        verb = self.forms(_VERBS, m.verb)[0]
        return self.subject(m) + [
            ("no" if m.negated else "", None),
            (verb, None),
            *self.obj(m),
            self.place(m),
            self.time(m),
        ]

    def located(self, m):
        return self.subject(m) + [
            ("no" if m.negated else "", None),
            ("están" if m.partner else "está", None),
            self.place(m),
            self.time(m),
        ]

    def have(self, m):
        gender, sg, pl = self.forms(_NOUNS, m.obj)
        if m.negated:
            return self.subject(m) + [("no tiene", None), (pl, "obj")]
        if m.count is None:
            return self.subject(m) + [("tiene", None), (pl, "obj")]
        number = _ES_ONE[gender] if m.count == 1 else _NUMBERS["es"][m.count - 1]
        return self.subject(m) + [("tiene", None), (number, "count"), (sg if m.count == 1 else pl, "obj")]

    def question(self, m, qtype):
        a = self.agent(m.agent)
        if m.kind == "have":
            gender, _, pl = self.forms(_NOUNS, m.obj)
            return ["Cuántas" if gender == "f" else "Cuántos", pl, "tiene", a]
        place = self.place(m)[0]
        if m.kind == "located":
            return {"who": ["Quién está", place], "where": ["Dónde está", a], "when": ["Cuándo está", a, place]}[qtype]
        verb = self.forms(_VERBS, m.verb)[0]
        obj = " ".join(text for text, _ in self.obj(m))
        return {
            "who": ["Quién", verb, obj],
            "what": ["Qué", verb, a],
            "where": ["Dónde", verb, a, obj],
            "when": ["Cuándo", verb, a, obj],
        }[qtype]


class _Russian(_Grammar):
    lang, conj = "ru", "и"

    def obj(self, m: Meaning) -> str:
        gender, _, acc, *_ = self.forms(_NOUNS, m.obj)
        adj = self.forms(_ADJECTIVES, m.adj)[("m", "f", "n", "ma").index(gender)] if m.adj else ""
        return " ".join(w for w in (adj, acc) if w)

    def action(self, m):  # S time [не] V O place: "Анна утром читает красную книгу в парке."
        verb = self.forms(_VERBS, m.verb)[0]
        return self.subject(m) + [
            self.time(m),
            ("не" if m.negated else "", None),
            (verb, None),
            (self.obj(m), "obj"),
            self.place(m),
        ]

    def located(self, m):  # no copula in the present: "Анна утром в парке."
        return self.subject(m) + [self.time(m), ("не" if m.negated else "", None), self.place(m)]

    def have(self, m):  # "У Анны есть три яблока." / "У Анны нет яблок."
        gender, nom, _, gen, nom_pl, gen_pl = self.forms(_NOUNS, m.obj)
        owner: list[_Seg] = [("У", None), (self.agent(m.agent, 1), "agent")]
        if m.negated:
            return owner + [("нет", None), (gen_pl, "obj")]
        if m.count is None:
            return owner + [("есть", None), (nom_pl, "obj")]
        if m.count == 1:
            number, noun = _RU_ONE[gender], nom
        elif m.count == 2:
            number, noun = _RU_TWO[gender], gen
        else:
            number, noun = _NUMBERS["ru"][m.count - 1], gen if m.count <= 4 else gen_pl
        return owner + [("есть", None), (number, "count"), (noun, "obj")]

    def question(self, m, qtype):
        a = self.agent(m.agent)
        if m.kind == "have":
            return ["Сколько", self.forms(_NOUNS, m.obj)[5], "у", self.agent(m.agent, 1)]
        place = self.place(m)[0]
        if m.kind == "located":
            return {"who": ["Кто", place], "where": ["Где", a], "when": ["Когда", a, place]}[qtype]
        verb, obj = self.forms(_VERBS, m.verb)[0], self.obj(m)
        what = "Кого" if "A" in _NOUNS[m.obj]["tags"] else "Что"
        return {
            "who": ["Кто", verb, obj],
            "what": [what, verb, a],
            "where": ["Где", a, verb, obj],
            "when": ["Когда", a, verb, obj],
        }[qtype]


class _Hindi(_Grammar):
    lang, conj, end = "hi", "और", "।"

    def verb(self, m: Meaning, gender: str, negated: bool) -> str:
        """Habitual present: stem + ता/ती + है; negated: नहीं + participle (है dropped)."""
        *prefix, stem = self.forms(_VERBS, m.verb)[0].split()
        participle = stem + ("ती" if gender == "f" else "ता")
        return " ".join(prefix + (["नहीं", participle] if negated else [participle, "है"]))

    def obj(self, m: Meaning) -> list[_Seg]:
        """The object; animals are definite objects marked with को, in the oblique (को kept out of the slot)."""
        gender, sg, _, *oblique = self.forms(_NOUNS, m.obj)
        animal = "A" in _NOUNS[m.obj]["tags"]
        adj = self.forms(_ADJECTIVES, m.adj)[2 if gender == "f" else int(animal)] if m.adj else ""
        np = " ".join(w for w in (adj, oblique[0] if animal else sg) if w)
        return [(np, "obj"), ("को", None)] if animal else [(np, "obj")]

    def action(self, m):  # S time place O V: "अन्ना सुबह पार्क में लाल किताब पढ़ती है।"
        return self.subject(m) + [
            self.time(m),
            self.place(m),
            *self.obj(m),
            (self.verb(m, _gender(m.agent), m.negated), None),
        ]

    def located(self, m):
        be = "हैं" if m.partner else "है"
        return self.subject(m) + [self.time(m), self.place(m), (f"नहीं {be}" if m.negated else be, None)]

    def have(self, m):  # "अन्ना के पास तीन सेब हैं।"
        _, sg, pl, *_ = self.forms(_NOUNS, m.obj)
        owner = self.subject(m) + [("के पास", None)]
        if m.negated:
            return owner + [("कोई", None), (sg, "obj"), ("नहीं है", None)]
        if m.count is None:
            return owner + [(pl, "obj"), ("हैं", None)]
        one = m.count == 1
        return owner + [(_NUMBERS["hi"][m.count - 1], "count"), (sg if one else pl, "obj"), ("है" if one else "हैं", None)]

    def question(self, m, qtype):
        a = self.agent(m.agent)
        if m.kind == "have":
            gender, _, pl, *_ = self.forms(_NOUNS, m.obj)
            return [a, "के पास", "कितनी" if gender == "f" else "कितने", pl, "हैं"]
        place = self.place(m)[0]
        if m.kind == "located":
            hona = "होती है" if _gender(m.agent) == "f" else "होता है"
            return {"who": [place, "कौन है"], "where": [a, "कहाँ है"], "when": [a, place, "कब", hona]}[qtype]
        verb = self.verb(m, _gender(m.agent), False)
        obj = " ".join(text for text, _ in self.obj(m))
        what = "किसे" if "A" in _NOUNS[m.obj]["tags"] else "क्या"
        return {
            "who": [obj, "कौन", self.verb(m, "m", False)],
            "what": [a, what, verb],
            "where": [a, obj, "कहाँ", verb],
            "when": [a, obj, "कब", verb],
        }[qtype]


class _Arabic(_Grammar):
    lang, qmark = "ar", "؟"

    def subject(self, m):  # "و" (and) is written joined to the next word
        segs: list[_Seg] = [(self.agent(m.agent), "agent")]
        return segs + [("و" + self.agent(m.partner), "partner")] if m.partner else segs

    def verb(self, m: Meaning, gender: str) -> tuple[str, str]:
        """(verb agreeing with `gender`, its preposition or "")."""
        verb, *prep = self.forms(_VERBS, m.verb)[0].split()
        return ("ت" + verb[1:] if gender == "f" else verb), " ".join(prep)

    def obj(self, m: Meaning) -> str:
        gender, sg, *_ = self.forms(_NOUNS, m.obj)
        adj = "ال" + self.forms(_ADJECTIVES, m.adj)[gender == "f"] if m.adj else ""
        return " ".join(w for w in ("ال" + sg, adj) if w)

    def action(self, m):  # S [لا] V O place time: "آنا تقرأ الكتاب الأحمر في المتنزه في الصباح."
        verb, prep = self.verb(m, _gender(m.agent))
        return self.subject(m) + [
            ("لا" if m.negated else "", None),
            (verb, None),
            (prep, None),
            (self.obj(m), "obj"),
            self.place(m),
            self.time(m),
        ]

    def located(self, m):  # nominal sentence; negation with ليس, agreeing in gender and number
        genders = {_gender(m.agent), _gender(m.partner)} if m.partner else {_gender(m.agent)}
        feminine = genders == {"f"}
        laysa = ("ليستا" if feminine else "ليسا") if m.partner else ("ليست" if feminine else "ليس")
        return self.subject(m) + [(laysa if m.negated else "", None), self.place(m), self.time(m)]

    def have(self, m):  # "لدى آنا ثلاث تفاحات."
        gender, sg, dual, pl = self.forms(_NOUNS, m.obj)
        owner: list[_Seg] = [("ليس لدى" if m.negated else "لدى", None), (self.agent(m.agent), "agent")]
        if m.negated:
            return owner + [("أي", None), (sg, "obj")]
        if m.count is None:
            return owner + [(pl, "obj")]
        number: _Seg = (_AR_NUMBERS[gender][m.count - 1], "count")
        if m.count <= 2:  # the noun (singular / dual) comes first, the number follows as an adjective
            return owner + [(sg if m.count == 1 else dual, "obj"), number]
        return owner + [number, (pl, "obj")]

    def question(self, m, qtype):
        a = self.agent(m.agent)
        if m.kind == "have":
            return ["كم", self.forms(_NOUNS, m.obj)[1], "لدى", a]
        place = self.place(m)[0]
        if m.kind == "located":
            kana = "تكون" if _gender(m.agent) == "f" else "يكون"
            return {"who": ["من", place], "where": ["أين", a], "when": ["متى", kana, a, place]}[qtype]
        verb, prep = self.verb(m, _gender(m.agent))
        obj = " ".join(w for w in (prep, self.obj(m)) if w)
        return {
            "who": ["من", self.verb(m, "m")[0], obj],
            "what": [prep, "ماذا", verb, a],
            "where": ["أين", verb, a, obj],
            "when": ["متى", verb, a, obj],
        }[qtype]


class _Chinese(_Grammar):
    lang, sep, end, qmark, conj = "zh", "", "。", "？", "和"

    def obj(self, m: Meaning) -> str:
        noun = self.forms(_NOUNS, m.obj)[0]
        return (self.forms(_ADJECTIVES, m.adj)[0] if m.adj else "") + noun

    def action(self, m):  # S time [不] place V O: "安娜早上在公园读红色的书。"
        return self.subject(m) + [
            self.time(m),
            ("不" if m.negated else "", None),
            self.place(m),
            (self.forms(_VERBS, m.verb)[0], None),
            (self.obj(m), "obj"),
        ]

    def located(self, m):
        return self.subject(m) + [self.time(m), ("不" if m.negated else "", None), self.place(m)]

    def have(self, m):
        noun, classifier = self.forms(_NOUNS, m.obj)
        if m.negated or m.count is None:
            return self.subject(m) + [("没有" if m.negated else "有", None), (noun, "obj")]
        return self.subject(m) + [
            ("有", None),
            (_NUMBERS["zh"][m.count - 1], "count"),
            (classifier, None),
            (noun, "obj"),
        ]

    def question(self, m, qtype):
        a = self.agent(m.agent)
        if m.kind == "have":
            noun, classifier = self.forms(_NOUNS, m.obj)
            return [a, "有几", classifier, noun]
        place = self.place(m)[0]
        if m.kind == "located":
            return {"who": ["谁", place], "where": [a, "在哪里"], "when": [a, "什么时候", place]}[qtype]
        verb, obj = self.forms(_VERBS, m.verb)[0], self.obj(m)
        return {
            "who": ["谁", verb, obj],
            "what": [a, verb, "什么"],
            "where": [a, "在哪里", verb, obj],
            "when": [a, "什么时候", verb, obj],
        }[qtype]


_GRAMMARS: dict[str, _Grammar] = {
    g.lang: g for g in (_English(), _German(), _Spanish(), _Russian(), _Hindi(), _Arabic(), _Chinese())
}


def _grammar(lang: str) -> _Grammar:
    try:
        return _GRAMMARS[lang]
    except KeyError:
        raise ValueError(f"unknown language {lang!r}; expected one of {LANGUAGES}") from None


def _join(segs: Sequence[_Seg], sep: str) -> tuple[str, dict[str, tuple[int, int]]]:
    """Join non-empty segments with `sep`, capitalise the first letter; return text and slot spans."""
    parts: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    pos = 0
    for text, slot in segs:
        if not text:
            continue
        if parts:
            pos += len(sep)
        if slot:
            spans[slot] = (pos, pos + len(text))
        parts.append(text)
        pos += len(text)
    joined = sep.join(parts)
    first = joined[:1].upper()
    return (first + joined[1:] if len(first) == 1 else joined), spans


def _render_spans(m: Meaning, lang: str) -> tuple[str, dict[str, tuple[int, int]]]:
    g = _grammar(lang)
    text, spans = _join(g.statement(m), g.sep)
    return text + g.end, spans


def _question(m: Meaning, qtype: str, lang: str) -> str:
    g = _grammar(lang)
    text, _ = _join([(w, None) for w in g.question(m, qtype)], g.sep)
    return g.qprefix + text + g.qmark


def render(meaning: Meaning, lang: str) -> str:
    """The sentence for `meaning` in `lang`, with the language's final punctuation."""
    return _render_spans(meaning, lang)[0]


def _languages(languages: Sequence[str] | None) -> tuple[str, ...]:
    chosen = tuple(languages) if languages is not None else LANGUAGES
    for lang in chosen:
        _grammar(lang)
    return chosen


# =============================================================================================
# Corpora
# =============================================================================================


def parallel_corpus(n: int, seed: int = 0, languages: Sequence[str] | None = None) -> list[dict[str, str]]:
    """`n` rows, each mapping every language to the translation of one sampled meaning."""
    langs = _languages(languages)
    return [{lang: render(m, lang) for lang in langs} for m in sample_meanings(n, seed)]


def monolingual_corpus(lang: str, n_docs: int, seed: int = 0, sentences_per_doc: int = 8) -> list[str]:
    """`n_docs` documents of `sentences_per_doc` sentences each, for language-model pretraining.

    Each language and seed draws its own stream of meanings (so the pretraining text is not
    secretly parallel); a document keeps a small cast of three people, for some coherence.
    Sentences are joined by a space (zh: by nothing).
    """
    g = _grammar(lang)
    if n_docs < 0 or sentences_per_doc < 1:
        raise ValueError("need n_docs >= 0 and sentences_per_doc >= 1")
    rng = random.Random(f"monolingual:{lang}:{seed}")
    docs = []
    for _ in range(n_docs):
        cast = rng.sample(_AGENT_KEYS, 3)
        docs.append(g.sep.join(render(_sample_meaning(rng, cast), lang) for _ in range(sentences_per_doc)))
    return docs


# =============================================================================================
# NLI. A premise meaning P and a hypothesis meaning H related by one operation with a known label.
# The world's logic: an action's details (adjective, place, time) narrow it, so a positive
# sentence entails itself with fewer details and a negated one entails itself with more; a
# person is in one place at a given time; "has N" is exact; "X and Y are ..." says it of both.
# =============================================================================================

_ENTAILMENT, _NEUTRAL, _CONTRADICTION = 0, 1, 2
_DETAILS = {"adj": _ADJ_KEYS, "place": _PLACE_KEYS, "time": _TIME_KEYS}
_Transform = Callable[[random.Random, Meaning], "Meaning | None"]


def _drop_details(rng: random.Random, m: Meaning) -> Meaning | None:
    present = [d for d in _DETAILS if getattr(m, d) is not None]
    if not present:
        return None
    return replace(m, **{d: None for d in rng.sample(present, rng.randint(1, len(present)))})


def _add_details(rng: random.Random, m: Meaning) -> Meaning | None:
    absent = [d for d in _DETAILS if getattr(m, d) is None]
    if not absent:
        return None
    return replace(m, **{d: rng.choice(_DETAILS[d]) for d in rng.sample(absent, rng.randint(1, len(absent)))})


def _one_of_pair(rng: random.Random, m: Meaning) -> str:
    return rng.choice([m.agent, m.partner]) if m.partner else m.agent


def _new_agent(rng: random.Random, m: Meaning) -> str:
    return rng.choice([a for a in _AGENT_KEYS if a not in (m.agent, m.partner)])


def _other(rng: random.Random, keys: Sequence, current: object) -> object:
    return rng.choice([k for k in keys if k != current])


# --- entailment
def _e_weaken(rng, p):  # "reads the red book in the park" => "reads the book"; "A and B are" => "B is"
    if p.negated:
        return None
    if p.kind == "action":
        return _drop_details(rng, p)
    if p.kind == "located" and p.partner:
        return replace(p, agent=_one_of_pair(rng, p), partner=None)
    return replace(p, count=None) if p.kind == "have" and p.count else None


def _e_strengthen_negated(rng, p):  # "does not read the book" => "does not read the red book at night"
    if not p.negated:
        return None
    if p.kind == "action":
        return _add_details(rng, p)
    return replace(p, agent=_one_of_pair(rng, p), partner=None) if p.kind == "located" and p.partner else None


def _e_swap_pair(rng, p):  # "A and B are in the park" => "B and A are in the park"
    return replace(p, agent=p.partner, partner=p.agent) if p.kind == "located" and p.partner else None


def _e_there(rng, p):  # "reads the book in the park" => "is in the park"
    if p.kind == "action" and not p.negated and p.place:
        return Meaning("located", p.agent, place=p.place, time=p.time)
    return None


def _e_not_elsewhere(rng, p):  # "is in the park in the morning" => "is not at school in the morning"
    if p.negated or p.kind == "have" or p.place is None:
        return None
    return Meaning("located", _one_of_pair(rng, p), place=_other(rng, _PLACE_KEYS, p.place), time=p.time, negated=True)


# --- contradiction
def _c_negate(rng, p):  # "reads the red book" x "does not read the book"
    if p.negated:
        return None
    if p.kind == "action":
        h = replace(p, negated=True)
        return (_drop_details(rng, h) or h) if rng.random() < 0.5 else h
    if p.kind == "located":
        return Meaning("located", _one_of_pair(rng, p), place=p.place, time=p.time, negated=True)
    return replace(p, count=None, negated=True)


def _c_affirm(rng, p):  # "does not read the book" x "reads the red book in the park"
    if not p.negated:
        return None
    if p.kind == "action":
        h = replace(p, negated=False)
        return (_add_details(rng, h) or h) if rng.random() < 0.5 else h
    if p.kind == "located":
        return Meaning("located", _one_of_pair(rng, p), place=p.place, time=p.time)
    return replace(p, negated=False, count=rng.choice([None, rng.randint(1, 10)]))


def _c_elsewhere(rng, p):  # "is in the park in the morning" x "is at school in the morning"
    if p.kind == "located" and not p.negated:
        return Meaning("located", _one_of_pair(rng, p), place=_other(rng, _PLACE_KEYS, p.place), time=p.time)
    return None


def _c_recount(rng, p):  # "has three apples" x "has five apples"
    if p.kind == "have" and p.count:
        return replace(p, count=_other(rng, range(1, 11), p.count))
    return None


def _c_not_there(rng, p):  # "reads the book in the park" x "is not in the park"
    if p.kind == "action" and not p.negated and p.place:
        return Meaning("located", p.agent, place=p.place, time=p.time, negated=True)
    return None


# --- neutral
def _n_more(rng, p):  # "reads the book" ? "reads the book in the park"; "has apples" ? "has three apples"
    if p.negated:
        return None
    if p.kind == "action":
        return _add_details(rng, p)
    if p.kind == "have":
        return replace(p, count=rng.randint(1, 10)) if p.count is None else None
    return replace(p, partner=_new_agent(rng, p)) if not p.partner else None


def _n_less_negated(rng, p):  # "does not read the red book" ? "does not read the book"
    if not p.negated:
        return None
    if p.kind == "action":
        return _drop_details(rng, p)
    return replace(p, partner=_new_agent(rng, p)) if p.kind == "located" and not p.partner else None


def _n_negate_more(rng, p):  # "reads the book" ? "does not read the book at night"
    if p.kind == "action" and not p.negated:
        h = _add_details(rng, p)
        return replace(h, negated=True) if h else None
    return None


def _n_affirm_elsewhere(rng, p):  # "does not read the book in the park" ? "reads the book at school"
    if not p.negated or p.place is None:
        return None
    place = _other(rng, _PLACE_KEYS, p.place)
    if p.kind == "action":
        return replace(p, negated=False, place=place)
    return Meaning("located", _one_of_pair(rng, p), place=place, time=p.time)


def _n_other_event(rng, p):  # "reads the book" ? "does not eat the apple"
    while True:
        verb = rng.choice(_VERB_KEYS)
        obj = rng.choice(_OBJECTS_FOR[verb])
        if obj != p.obj:
            break
    keep_place = p.place if not (p.kind == "located" and p.negated) else None
    return Meaning(
        "action",
        p.agent,
        verb=verb,
        obj=obj,
        adj=_maybe(rng, _ADJ_KEYS, 0.3),
        place=keep_place,
        time=_maybe(rng, _TIME_KEYS, 0.3),
        negated=rng.random() < 0.3,
    )


def _n_other_agent(rng, p):  # "Anna reads the book" ? "Omar reads the book"
    return replace(p, agent=_new_agent(rng, p))


def _n_elsewhere_later(rng, p):  # "is in the park in the morning" ? "is at school at night"
    if p.kind == "located" and not p.negated and p.time:
        return Meaning(
            "located",
            _one_of_pair(rng, p),
            place=_other(rng, _PLACE_KEYS, p.place),
            time=_other(rng, _TIME_KEYS, p.time),
        )
    return None


def _n_other_thing(rng, p):  # "has three apples" ? "has no books"
    if p.kind != "have":
        return None
    negated = rng.random() < 0.3
    return Meaning(
        "have",
        p.agent,
        obj=_other(rng, _NOUN_KEYS, p.obj),
        negated=negated,
        count=None if negated else rng.choice([None, rng.randint(1, 10)]),
    )


_NLI_TRANSFORMS: dict[int, tuple[_Transform, ...]] = {
    _ENTAILMENT: (_e_weaken, _e_strengthen_negated, _e_swap_pair, _e_there, _e_not_elsewhere),
    _NEUTRAL: (
        _n_more,
        _n_less_negated,
        _n_negate_more,
        _n_affirm_elsewhere,
        _n_other_event,
        _n_other_agent,
        _n_elsewhere_later,
        _n_other_thing,
    ),
    _CONTRADICTION: (_c_negate, _c_affirm, _c_elsewhere, _c_recount, _c_not_there),
}


@lru_cache(maxsize=16)
def _nli_meanings(n: int, seed: int) -> tuple[tuple[tuple[Meaning, ...], Meaning, int], ...]:
    """(premise meanings, hypothesis meaning, label) triples; language-free, hence parallel."""
    rng = random.Random(f"nli:{seed}")
    labels = [i % 3 for i in range(n)]
    rng.shuffle(labels)
    triples = []
    for label in labels:
        hypothesis = None
        while hypothesis is None:
            premise = _sample_meaning(rng)
            for transform in rng.sample(_NLI_TRANSFORMS[label], len(_NLI_TRANSFORMS[label])):
                hypothesis = transform(rng, premise)
                if hypothesis is not None and hypothesis != premise:
                    break
                hypothesis = None
        premises: tuple[Meaning, ...] = (premise,)
        if rng.random() < 0.25:  # an unrelated sentence about other people, before or after
            involved = {premise.agent, premise.partner, hypothesis.agent, hypothesis.partner}
            bystander = _sample_meaning(rng, [a for a in _AGENT_KEYS if a not in involved])
            premises = (bystander, premise) if rng.random() < 0.5 else (premise, bystander)
        triples.append((premises, hypothesis, label))
    return tuple(triples)


def nli_items(lang: str, n: int, seed: int = 0) -> list[dict]:
    """`n` NLI items in the XNLI schema: {"premise", "hypothesis", "label"}.

    label: 0 entailment, 1 neutral, 2 contradiction; exactly balanced up to n % 3. Items are
    parallel: the same (n, seed) gives the same meanings and labels in every language, so
    zero-shot transfer can be compared item by item.
    """
    g = _grammar(lang)
    return [
        {
            "premise": g.sep.join(render(m, lang) for m in premises),
            "hypothesis": render(hypothesis, lang),
            "label": label,
        }
        for premises, hypothesis, label in _nli_meanings(n, seed)
    ]


# =============================================================================================
# QA. A scene of 3-5 facts with distinct people, objects and places, so every question has one
# answer; the answer is the span of one slot of one fact.
# =============================================================================================

_QTYPES = ("who", "what", "where", "when", "how_many")
_ANSWER_SLOT = {"who": "agent", "what": "obj", "where": "place", "when": "time", "how_many": "count"}


def _answerable(m: Meaning, qtype: str) -> bool:
    if m.negated:
        return False
    return {
        "who": m.kind == "action" or (m.kind == "located" and not m.partner),
        "what": m.kind == "action",
        "where": m.kind == "located" or (m.kind == "action" and m.place is not None),
        "when": m.kind != "have" and m.time is not None,
        "how_many": m.kind == "have" and m.count is not None,
    }[qtype]


@lru_cache(maxsize=16)
def _qa_scenes(n: int, seed: int) -> tuple[tuple[tuple[Meaning, ...], int, str], ...]:
    """(scene meanings, index of the asked fact, question type); language-free, hence parallel."""
    rng = random.Random(f"qa:{seed}")
    qtypes = [_QTYPES[i % len(_QTYPES)] for i in range(n)]
    rng.shuffle(qtypes)
    scenes = []
    for qtype in qtypes:
        agents: set[str] = set()
        objs: set[str] = set()
        places: set[str] = set()
        facts: list[Meaning] = []
        size = rng.randint(3, 5)
        while len(facts) < size:
            m = _sample_meaning(rng)
            people = {m.agent, m.partner} - {None}
            if (not facts and not _answerable(m, qtype)) or people & agents or m.obj in objs or m.place in places:
                continue
            agents |= people
            objs |= {m.obj} - {None}
            places |= {m.place} - {None}
            facts.append(m)
        target = facts.pop(0)
        position = rng.randint(0, len(facts))
        facts.insert(position, target)
        scenes.append((tuple(facts), position, qtype))
    return tuple(scenes)


def qa_items(lang: str, n: int, seed: int = 0) -> list[dict]:
    """`n` extractive QA items in the XQuAD schema.

    {"id", "context", "question", "answers": {"text": [answer], "answer_start": [char offset]}};
    the answer is an exact substring of the context at that offset. Question types (who, what,
    where, when, how many) are balanced; ids and facts are the same in every language.
    """
    g = _grammar(lang)
    items = []
    for i, (facts, position, qtype) in enumerate(_qa_scenes(n, seed)):
        sentences, offset, start, answer = [], 0, 0, ""
        for j, m in enumerate(facts):
            text, spans = _render_spans(m, lang)
            if j == position:
                a, b = spans[_ANSWER_SLOT[qtype]]
                start, answer = offset + a, text[a:b]
            sentences.append(text)
            offset += len(text) + len(g.sep)
        items.append(
            {
                "id": f"world-{seed}-{i}",
                "context": g.sep.join(sentences),
                "question": _question(facts[position], qtype, lang),
                "answers": {"text": [answer], "answer_start": [start]},
            }
        )
    return items


# =============================================================================================
# Splits
# =============================================================================================


def splits(items: list, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, list]:
    """Deterministic train/validation/test split of `items`.

    Which positions go where depends only on len(items) and seed, and items keep their order
    within a split, so splitting two parallel lists (e.g. the NLI items of two languages) with
    the same seed keeps them aligned.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    order = list(range(len(items)))
    random.Random(f"splits:{seed}").shuffle(order)
    n_train = round(fractions[0] * len(items))
    n_val = min(round(fractions[1] * len(items)), len(items) - n_train)
    cuts = {"train": order[:n_train], "validation": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {name: [items[i] for i in sorted(idx)] for name, idx in cuts.items()}
