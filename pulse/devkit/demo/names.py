"""Name pools of the demo world: people, companies, legal suffixes, CSMs and social handles."""
from __future__ import annotations

_LEGAL: dict[str, tuple[str, ...]] = {
    "US": ("", "", " Inc.", " LLC", " Corp."), "CA": ("", " Inc.", " Ltd."),
    "GB": ("", " Ltd", " Ltd."), "IE": (" Ltd", ""), "DE": (" GmbH", " GmbH", " AG", ""),
    "FR": (" SAS", " SARL", ""), "ES": (" S.L.", " S.A.", ""), "NL": (" B.V.", ""),
    "SE": (" AB", ""), "SG": (" Pte. Ltd.", ""), "AU": (" Pty Ltd", ""), "ID": ("", ""),
    "PH": (" Inc.", ""), "NZ": (" Ltd", ""), "IN": (" Pvt. Ltd.", ""),
}

_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (
        ("James", "Olivia", "Liam", "Emma", "Noah", "Ava", "Ethan", "Sophia", "Mason",
         "Isabella", "Lucas", "Mia", "Aiden", "Harper", "Ella", "Jack", "Grace", "Chloe",
         "Daniel", "Priya", "Wei", "Aaliyah", "Marcus", "Zoë", "Nora", "Caleb", "Hannah",
         "Omar", "Leah", "Ryan", "Megan", "Tyler", "Jasmine", "André", "Keisha", "Connor",
         "Siobhan", "Renée", "Samuel", "Fatima", "Brooke", "Diego", "Naomi", "Ben", "Kate"),
        ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
         "Rodriguez", "Martinez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore",
         "Jackson", "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis",
         "Walker", "Young", "Allen", "King", "Wright", "Scott", "Nguyen", "Patel", "Kim",
         "O'Brien", "Murphy", "Kelly", "Chen", "Okafor", "Brennan", "Foster", "Hughes"),
    ),
    "de": (
        ("Lukas", "Leon", "Finn", "Jonas", "Anna", "Lena", "Marie", "Sophie", "Jürgen",
         "Jörg", "Björn", "Käthe", "Günther", "Anja", "Katrin", "Stefan", "Matthias",
         "Felix", "Lea", "Tobias", "Sabine", "Maximilian"),
        ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
         "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf",
         "Schröder", "Neumann", "Schwarz", "Zimmermann", "Krüger", "Hartmann", "Lange",
         "Weiß", "Brückner"),
    ),
    "fr": (
        ("Louis", "Gabriel", "Léa", "Chloé", "Camille", "Hugo", "Jules", "Inès", "Zoé",
         "Amélie", "Théo", "Noémie", "François", "Hélène", "Benoît", "Manon", "Élodie"),
        ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
         "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garnier", "Faure",
         "Rousseau", "Gérard", "Fontaine", "Chevalier"),
    ),
    "es": (
        ("José", "María", "Lucía", "Sofía", "Martín", "Mateo", "Hugo", "Álvaro", "Marta",
         "Paula", "Javier", "Sergio", "Elena", "Raúl", "Inés", "Nuria", "Íñigo"),
        ("García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez",
         "Pérez", "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno",
         "Álvarez", "Muñoz", "Romero", "Ibáñez"),
    ),
    "nl": (
        ("Daan", "Sem", "Lotte", "Emma", "Bram", "Fleur", "Sanne", "Thijs", "Joost", "Anouk",
         "Maartje", "Ruben"),
        ("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Visser",
         "Smit", "Meijer", "de Boer", "Mulder", "Bos"),
    ),
    "nordic": (
        ("Søren", "Åsa", "Björn", "Ingrid", "Mikkel", "Sigrid", "Erik", "Astrid", "Linnéa",
         "Oskar", "Elin"),
        ("Jensen", "Nielsen", "Hansen", "Andersson", "Johansson", "Østergaard", "Lindqvist",
         "Karlsson", "Nilsson", "Ekström", "Åberg"),
    ),
    "sea": (
        ("Wei Ling", "Jun Hao", "Siti", "Nurul", "Kai", "Mei", "Thanh", "Linh", "Ayu",
         "Budi", "Maria Clara", "Paolo", "Rizal", "Hui Min", "Dewi"),
        ("Tan", "Lim", "Lee", "Ng", "Wong", "Goh", "Chua", "Ong", "Santoso", "Wijaya",
         "Reyes", "Santos", "Cruz", "Nguyen", "Tran", "Hidayat", "Bautista"),
    ),
    "in": (
        ("Arjun", "Priya", "Rohan", "Ananya", "Vikram", "Sneha", "Aditya", "Kavya", "Rahul",
         "Isha", "Karthik", "Meera"),
        ("Sharma", "Patel", "Iyer", "Reddy", "Gupta", "Nair", "Menon", "Rao", "Kapoor",
         "Banerjee", "Joshi"),
    ),
}
_COMPANY_WORDS: tuple[str, ...] = (
    "Northwind", "Bluefin", "Brightline", "Cobalt", "Crescent", "Driftwood", "Evergreen",
    "Fjord", "Granite", "Harbor", "Ironbark", "Juniper", "Kestrel", "Lumen", "Maple",
    "Meridian", "Nimbus", "Oakridge", "Orbit", "Pinecrest", "Quartz", "Redwood", "Riverbend",
    "Saffron", "Silverline", "Summit", "Tidewater", "Trellis", "Umber", "Vantage", "Willow",
    "Zephyr", "Alder", "Beacon", "Cascade", "Copperleaf", "Dune", "Ember", "Falcon",
    "Glacier", "Hollow", "Indigo", "Jasper", "Keystone", "Lakeside", "Lodestar", "Mosaic",
    "Nova", "Onyx", "Paragon", "Pioneer", "Prairie", "Quill", "Raven", "Sable", "Sierra",
    "Solstice", "Starling", "Sterling", "Tamarack", "Topaz", "Vertex", "Wavecrest", "Yarrow",
    "Zenith", "Arbor", "Bramble", "Canyon", "Delta", "Foxglove", "Halcyon", "Helix",
    "Horizon", "Kinetic", "Larkspur", "Magnolia", "Nordlicht", "Osprey", "Polaris", "Rook",
    "Sequoia", "Tundra", "Löwenzahn", "Étoile", "Åkerberg", "Brisa", "Lichtblick",
    "Sunbeam", "Greenfield", "Blackstone", "Clearwater", "Ridgeway", "Westbrook",
)
_INDUSTRIES: tuple[str, ...] = (
    "Analytics", "Logistics", "Health", "Labs", "Systems", "Software", "Foods", "Robotics",
    "Capital", "Media", "Energy", "Freight", "Studios", "Dynamics", "Networks", "Bio",
    "Retail", "Learning", "Security", "Cloud", "Data", "Payments", "Travel", "Mobility",
    "Insurance", "Markets", "Works", "Digital", "Solutions", "Partners", "Technologies",
    "Apparel", "Outdoors", "Interactive", "Ventures", "Clinics", "Manufacturing", "Legal",
)
_ROLES: tuple[str, ...] = (
    "Engineer", "Analyst", "Ops Manager", "Finance Manager", "Head of Data", "Developer",
    "Support Lead", "Product Manager", "Marketing Lead", "IT Administrator", "CTO",
    "VP Operations", "Data Scientist", "Account Executive",
)
_CSMS: dict[int, tuple[str, ...]] = {
    0: ("maya.chen", "ben.carter", "grace.okafor"),
    1: ("diego.morales", "emily.park", "tom.becker"),
    2: ("sophie.laurent", "hannah.vogel", "lars.eriksen", "jonas.weber"),
    3: ("ravi.menon", "aisha.rahman"),
}
_HANDLE_WORDS: tuple[str, ...] = (
    "data", "ops", "dev", "growth", "saas", "metrics", "product", "infra", "cloud", "pm",
    "founder", "analytics", "eng", "cs", "revops", "build", "ships", "codes", "writes",
)
