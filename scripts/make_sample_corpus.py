"""Write the bundled multilingual sample corpus: textbatch/assets/sample_corpus/part-*.parquet.

Every sentence below was written for this project. Rows are one to several sentences of one language, so lengths
spread from a handful of tokens to a few hundred; a few rows are deliberately odd (mixed scripts, emoji, odd
whitespace, one longer than the bundled model's 512-token window, an empty text and a null text) so the default run
shows how the job treats them. Deterministic: the same script writes the same rows.

    python scripts/make_sample_corpus.py [--out textbatch/assets/sample_corpus]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import pathlib
import random

import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger("make_sample_corpus")

DEFAULT_OUT = pathlib.Path(__file__).resolve().parents[1] / "textbatch" / "assets" / "sample_corpus"

# (language, ISO 15924 script, sentences)
SENTENCES: list[tuple[str, str, list[str]]] = [
    (
        "en",
        "Latn",
        [
            "The library opens at nine and closes late on Thursdays.",
            "Rain is expected tomorrow, so take an umbrella.",
            "She measured the river's depth at three points along the bridge.",
            "Our train was delayed by twenty minutes near the border.",
            "Fresh bread, two apples and a jar of honey, please.",
            "The committee will publish its report in early spring.",
            "He repaired the old radio with a soldering iron and a lot of patience.",
            "Children were flying kites on the hill above the village.",
            "Please send the signed contract before Friday noon.",
            "A quiet street, a lamp, and the smell of coffee.",
        ],
    ),
    (
        "fr",
        "Latn",
        [
            "La bibliothèque ouvre à neuf heures et ferme tard le jeudi.",
            "Il pleuvra demain, alors prends ton parapluie.",
            "Nous avons acheté du pain frais, deux pommes et un pot de miel.",
            "Le train a été retardé de vingt minutes près de la frontière.",
            "Elle écrit une lettre à sa grand-mère chaque dimanche.",
            "Où se trouve la gare la plus proche, s'il vous plaît ?",
            "Les enfants jouent dans le jardin derrière l'école.",
            "Ce café est délicieux, mais un peu trop sucré.",
        ],
    ),
    (
        "de",
        "Latn",
        [
            "Die Bibliothek öffnet um neun Uhr und schließt donnerstags spät.",
            "Morgen soll es regnen, also nimm einen Regenschirm mit.",
            "Der Zug hatte an der Grenze zwanzig Minuten Verspätung.",
            "Wir kaufen frisches Brot, zwei Äpfel und ein Glas Honig.",
            "Die Straßenbahn fährt alle zehn Minuten zum Hauptbahnhof.",
            "Er hat das alte Radio mit viel Geduld repariert.",
            "Über den Bergen zog langsam ein Gewitter auf.",
            "Bitte schicken Sie den unterschriebenen Vertrag bis Freitag.",
        ],
    ),
    (
        "es",
        "Latn",
        [
            "La biblioteca abre a las nueve y cierra tarde los jueves.",
            "Mañana lloverá, así que lleva un paraguas.",
            "Compramos pan fresco, dos manzanas y un tarro de miel.",
            "El tren llegó con veinte minutos de retraso.",
            "¿Dónde está la estación más cercana?",
            "Los niños volaban cometas en la colina.",
            "Mi abuela cocina la mejor paella del pueblo.",
            "El informe se publicará a principios de la primavera.",
        ],
    ),
    (
        "pt",
        "Latn",
        [
            "A biblioteca abre às nove e fecha tarde às quintas-feiras.",
            "Amanhã vai chover, então leve um guarda-chuva.",
            "Comprámos pão fresco, duas maçãs e um frasco de mel.",
            "O comboio atrasou vinte minutos perto da fronteira.",
            "As crianças brincam no jardim atrás da escola.",
            "Não há nada como um café quente numa manhã fria.",
        ],
    ),
    (
        "pl",
        "Latn",
        [
            "Biblioteka jest otwarta od dziewiątej do późnego wieczora.",
            "Jutro będzie padać, więc weź parasol.",
            "Kupiliśmy świeży chleb, dwa jabłka i słoik miodu.",
            "Pociąg spóźnił się dwadzieścia minut przy granicy.",
            "Dzieci puszczały latawce na wzgórzu za wsią.",
            "Proszę przesłać podpisaną umowę do piątku.",
        ],
    ),
    (
        "tr",
        "Latn",
        [
            "Kütüphane saat dokuzda açılır ve perşembe günleri geç kapanır.",
            "Yarın yağmur yağacak, şemsiyeni al.",
            "Taze ekmek, iki elma ve bir kavanoz bal aldık.",
            "Tren sınırın yakınında yirmi dakika gecikti.",
            "Çocuklar köyün üstündeki tepede uçurtma uçuruyordu.",
            "Lütfen imzalı sözleşmeyi cumaya kadar gönderin.",
        ],
    ),
    (
        "vi",
        "Latn",
        [
            "Thư viện mở cửa lúc chín giờ sáng.",
            "Ngày mai trời sẽ mưa, hãy mang theo ô.",
            "Chúng tôi đã mua bánh mì, hai quả táo và một hũ mật ong.",
            "Chuyến tàu bị trễ hai mươi phút gần biên giới.",
            "Trẻ em thả diều trên ngọn đồi phía sau làng.",
            "Cà phê sữa đá ở Hà Nội rất ngon.",
        ],
    ),
    (
        "ru",
        "Cyrl",
        [
            "Библиотека открывается в девять и закрывается поздно по четвергам.",
            "Завтра будет дождь, так что возьми зонт.",
            "Мы купили свежий хлеб, два яблока и банку мёда.",
            "Поезд опоздал на двадцать минут у границы.",
            "Дети запускали воздушных змеев на холме за деревней.",
            "Пожалуйста, пришлите подписанный договор до пятницы.",
            "Он починил старое радио с помощью паяльника и терпения.",
            "На улице тихо, горит фонарь и пахнет кофе.",
        ],
    ),
    (
        "uk",
        "Cyrl",
        [
            "Бібліотека відкривається о дев'ятій ранку.",
            "Завтра буде дощ, тож візьми парасольку.",
            "Ми купили свіжий хліб, два яблука і банку меду.",
            "Діти запускали повітряних зміїв на пагорбі за селом.",
            "Її бабуся щонеділі пече пиріжки з вишнями.",
        ],
    ),
    (
        "bg",
        "Cyrl",
        [
            "Библиотеката отваря в девет часа сутринта.",
            "Утре ще вали дъжд, затова вземи чадър.",
            "Децата играят в градината зад училището.",
            "Влакът закъсня с двадесет минути.",
        ],
    ),
    (
        "el",
        "Grek",
        [
            "Η βιβλιοθήκη ανοίγει στις εννέα το πρωί.",
            "Αύριο θα βρέξει, οπότε πάρε μια ομπρέλα.",
            "Αγοράσαμε φρέσκο ψωμί, δύο μήλα και ένα βάζο μέλι.",
            "Το τρένο καθυστέρησε είκοσι λεπτά κοντά στα σύνορα.",
            "Τα παιδιά πετούσαν χαρταετούς στον λόφο πάνω από το χωριό.",
            "Παρακαλώ στείλτε το υπογεγραμμένο συμβόλαιο μέχρι την Παρασκευή.",
            "Η θάλασσα ήταν ήρεμη και ο ουρανός καθαρός.",
        ],
    ),
    (
        "ar",
        "Arab",
        [
            "تفتح المكتبة في الساعة التاسعة صباحاً.",
            "ستمطر غداً، لذا خذ مظلة معك.",
            "اشترينا خبزاً طازجاً وتفاحتين وجرة عسل.",
            "تأخر القطار عشرين دقيقة بالقرب من الحدود.",
            "كان الأطفال يطيرون الطائرات الورقية فوق التل.",
            "أرجو إرسال العقد الموقع قبل يوم الجمعة.",
            "تقدم القهوة العربية عادة مع التمر.",
        ],
    ),
    (
        "fa",
        "Arab",
        [
            "کتابخانه ساعت نه صبح باز می\u200cشود.",
            "فردا باران می\u200cبارد، پس چتر بردار.",
            "ما نان تازه، دو سیب و یک شیشه عسل خریدیم.",
            "قطار بیست دقیقه تأخیر داشت.",
            "بچه\u200cها روی تپه بادبادک هوا می\u200cکردند.",
        ],
    ),
    (
        "he",
        "Hebr",
        [
            "הספרייה נפתחת בשעה תשע בבוקר.",
            "מחר ירד גשם, אז קח מטרייה.",
            "קנינו לחם טרי, שני תפוחים וצנצנת דבש.",
            "הרכבת איחרה בעשרים דקות ליד הגבול.",
            "הילדים העיפו עפיפונים על הגבעה.",
            "נא לשלוח את החוזה החתום עד יום שישי.",
        ],
    ),
    (
        "hi",
        "Deva",
        [
            "पुस्तकालय सुबह नौ बजे खुलता है।",
            "कल बारिश होगी, इसलिए छाता ले जाना।",
            "हमने ताज़ी रोटी, दो सेब और शहद का एक जार खरीदा।",
            "ट्रेन सीमा के पास बीस मिनट देर से पहुँची।",
            "बच्चे गाँव के ऊपर पहाड़ी पर पतंग उड़ा रहे थे।",
            "कृपया हस्ताक्षरित अनुबंध शुक्रवार तक भेज दें।",
            "मेरी दादी सबसे स्वादिष्ट खाना बनाती हैं।",
        ],
    ),
    (
        "mr",
        "Deva",
        [
            "ग्रंथालय सकाळी नऊ वाजता उघडते.",
            "उद्या पाऊस पडेल, म्हणून छत्री घेऊन जा.",
            "मुले टेकडीवर पतंग उडवत होती.",
        ],
    ),
    (
        "ne",
        "Deva",
        [
            "पुस्तकालय बिहान नौ बजे खुल्छ।",
            "भोलि पानी पर्छ, त्यसैले छाता लैजानुहोस्।",
        ],
    ),
    (
        "bn",
        "Beng",
        [
            "গ্রন্থাগারটি সকাল নয়টায় খোলে।",
            "আগামীকাল বৃষ্টি হবে, তাই একটি ছাতা নিয়ে যাও।",
            "আমরা তাজা রুটি, দুটি আপেল আর এক বয়াম মধু কিনেছি।",
            "শিশুরা পাহাড়ের উপর ঘুড়ি ওড়াচ্ছিল।",
        ],
    ),
    (
        "ta",
        "Taml",
        [
            "நூலகம் காலை ஒன்பது மணிக்குத் திறக்கும்.",
            "நாளை மழை பெய்யும், எனவே குடையை எடுத்துச் செல்லுங்கள்.",
            "குழந்தைகள் மலையின் மேல் பட்டம் விட்டனர்.",
        ],
    ),
    (
        "zh",
        "Hans",
        [
            "图书馆早上九点开门，星期四晚上很晚才关门。",
            "明天会下雨，所以带上雨伞吧。",
            "我们买了新鲜的面包、两个苹果和一罐蜂蜜。",
            "火车在边境附近晚点了二十分钟。",
            "孩子们在村子后面的山上放风筝。",
            "请在星期五中午之前把签好的合同寄过来。",
            "他用烙铁和耐心修好了那台旧收音机。",
            "街上很安静，路灯亮着，空气中有咖啡的香味。",
        ],
    ),
    (
        "zh-Hant",
        "Hant",
        [
            "圖書館早上九點開門。",
            "明天會下雨，記得帶雨傘。",
            "我們在夜市吃了臭豆腐，還喝了珍珠奶茶。",
        ],
    ),
    (
        "ja",
        "Jpan",
        [
            "図書館は朝九時に開きます。",
            "明日は雨が降るので、傘を持って行ってください。",
            "新鮮なパンとりんごを二つ、それに蜂蜜を一瓶買いました。",
            "電車は国境の近くで二十分遅れました。",
            "子どもたちは村の上の丘で凧をあげていました。",
            "金曜日の正午までに署名した契約書を送ってください。",
            "カタカナで書くと、コーヒーとパンとチョコレートです。",
        ],
    ),
    (
        "ko",
        "Hang",
        [
            "도서관은 아침 아홉 시에 문을 엽니다.",
            "내일은 비가 오니까 우산을 챙기세요.",
            "우리는 신선한 빵과 사과 두 개, 꿀 한 병을 샀어요.",
            "기차가 국경 근처에서 이십 분 늦었습니다.",
            "아이들이 마을 위 언덕에서 연을 날리고 있었어요.",
            "금요일 정오까지 서명한 계약서를 보내 주세요.",
        ],
    ),
    (
        "th",
        "Thai",
        [
            "ห้องสมุดเปิดเวลาเก้าโมงเช้า",
            "พรุ่งนี้ฝนจะตก อย่าลืมพกร่มไปด้วย",
            "เราซื้อขนมปังสด แอปเปิ้ลสองลูก และน้ำผึ้งหนึ่งขวด",
            "รถไฟมาช้ายี่สิบนาทีใกล้ชายแดน",
            "เด็ก ๆ กำลังเล่นว่าวบนเนินเขาหลังหมู่บ้าน",
            "กรุณาส่งสัญญาที่ลงนามแล้วภายในวันศุกร์",
        ],
    ),
    (
        "ka",
        "Geor",
        [
            "ბიბლიოთეკა დილის ცხრა საათზე იხსნება.",
            "ხვალ იწვიმებს, ამიტომ ქოლგა წაიღე.",
            "ვიყიდეთ ახალი პური, ორი ვაშლი და ქილა თაფლი.",
            "მატარებელი ოცი წუთით დაგვიანდა.",
            "ბავშვები გორაკზე ფრანებს უშვებდნენ.",
        ],
    ),
    (
        "hy",
        "Armn",
        [
            "Գրադարանը բացվում է առավոտյան ժամը ինը։",
            "Վաղը անձրև կգա, ուստի անձրևանոց վերցրու։",
            "Երեխաները բլրի վրա օդապարիկ էին թռցնում։",
        ],
    ),
    (
        "am",
        "Ethi",
        [
            "ቤተ መጻሕፍቱ ጠዋት በሦስት ሰዓት ይከፈታል።",
            "ነገ ዝናብ ይዘንባል፣ ስለዚህ ጃንጥላ ያዝ።",
            "ልጆቹ በኮረብታው ላይ ይጫወቱ ነበር።",
        ],
    ),
]

# Rows that show how the job treats unusual input; each is kept as written.
ODD_ROWS: list[tuple[str, str, str | None]] = [
    ("mixed", "Zyyy", "Meeting at 10:30 — café ☕ with Zoë, Ørjan and 李雷 🎉"),
    ("mixed", "Zyyy", "Price: €12.50 / ¥1,800 / ₹950 / ₽700 / ₪40"),
    ("mixed", "Zyyy", "Я сказал ему: 'see you tomorrow', а он ответил «до завтра»."),
    ("mixed", "Zyyy", "Emoji only: 👍🏽 🇺🇦 👨‍👩‍👧‍👦 🙂"),
    ("mixed", "Zyyy", "tabs\tbetween\twords, a non-breaking\u00a0space and a thin\u2009space"),
    ("mixed", "Zyyy", "   leading and trailing spaces   "),
    ("mixed", "Zyyy", "line one\nline two\r\nline three"),
    ("mixed", "Zyyy", "See https://example.org/path?q=1&lang=fr for details."),
    ("mixed", "Zyyy", "3.14159 2.71828 1.41421 6.02214076e23"),
    ("mixed", "Zyyy", "Special tokens written as text: <s> </s> <mask> stay text-like."),
    ("mixed", "Zyyy", "   "),  # whitespace only: tokenizes to no pieces, embedded like the empty text
    ("mixed", "Zyyy", ""),  # empty: embedded as "<s></s>"
    ("mixed", "Zyyy", None),  # null: comes out with error set and a null embedding
]


def build_rows(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    rows: list[tuple[str, str, str | None]] = []
    for lang, script, sentences in SENTENCES:
        joiner = "" if script in ("Hans", "Hant", "Jpan") else " "
        rows.extend((lang, script, sentence) for sentence in sentences)
        # Short paragraphs of 2-5 sentences give the middle of the length range.
        for _ in range(len(sentences) // 2 + 3):
            count = rng.randint(2, min(5, len(sentences)))
            rows.append((lang, script, joiner.join(rng.sample(sentences, count))))
        # One longer paragraph per language exercises the larger padded shapes.
        rows.append((lang, script, joiner.join(rng.choices(sentences, k=rng.randint(6, 12)))))
    # One text well past 512 tokens, to show truncation.
    latin = [s for lang, script, sentences in SENTENCES if script == "Latn" for s in sentences]
    rows.append(("mixed", "Latn", " ".join(rng.choices(latin, k=70))))
    rows.extend(ODD_ROWS)
    rng.shuffle(rows)
    return [
        {"id": f"doc-{index:05d}", "text": text, "lang": lang, "script": script}
        for index, (lang, script, text) in enumerate(rows, start=1)
    ]


def write_corpus(out: pathlib.Path, rows: list[dict], sizes=(97, 113, 89)) -> list[pathlib.Path]:
    """Split `rows` into uneven Parquet files (the last one takes the rest)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.parquet"):
        old.unlink()
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("lang", pa.string()), ("script", pa.string())])
    bounds = [0]
    for size in sizes:
        bounds.append(min(len(rows), bounds[-1] + size))
    bounds.append(len(rows))
    paths = []
    for part, (start, stop) in enumerate(itertools.pairwise(bounds)):
        if start == stop:
            continue
        path = out / f"part-{part:03d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows[start:stop], schema=schema), path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = build_rows()
    paths = write_corpus(args.out, rows)
    scripts = sorted({row["script"] for row in rows})
    logger.info("wrote %d rows in %d files to %s; scripts: %s", len(rows), len(paths), args.out, " ".join(scripts))


if __name__ == "__main__":
    main()
