-- The example university database (Postgres 15, database sourcedb, schema public).
-- Runs once, from /docker-entrypoint-initdb.d, when the postgres volume is created.
--
-- Every table has REPLICA IDENTITY FULL: Debezium then writes the whole old row in `before` for updates and
-- deletes, which Flink's 'debezium-json' format needs to turn an update into -U/+U (it rejects an UPDATE whose
-- `before` is null). The column list of each table here is what flink-sql/tables/<table>.sql declares; a test
-- parses both and compares them.

CREATE TABLE faculty (
    id SERIAL PRIMARY KEY,
    faculty_code VARCHAR(10) UNIQUE NOT NULL,
    faculty_name VARCHAR(100) NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE program (
    id SERIAL PRIMARY KEY,
    program_code VARCHAR(10) UNIQUE NOT NULL,
    program_name VARCHAR(100) NOT NULL,
    faculty_id INTEGER NOT NULL REFERENCES faculty (id),
    degree VARCHAR(20) NOT NULL DEFAULT 'S1',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE students (
    student_id VARCHAR(20) PRIMARY KEY,
    full_name VARCHAR(100) NOT NULL,
    entry_year INTEGER NOT NULL,
    program_id INTEGER NOT NULL REFERENCES program (id),
    degree VARCHAR(20) NOT NULL DEFAULT 'S1',
    faculty_id INTEGER NOT NULL REFERENCES faculty (id),
    status VARCHAR(20) DEFAULT 'active',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE student_detail (
    id SERIAL PRIMARY KEY,
    student_id VARCHAR(20) NOT NULL REFERENCES students (student_id),
    gender VARCHAR(10),
    birth_date DATE,
    birth_place VARCHAR(100),
    religion VARCHAR(20),
    nationality VARCHAR(50) DEFAULT 'Indonesia',
    registration_date DATE,
    address TEXT,
    city VARCHAR(50),
    province VARCHAR(50),
    postal_code VARCHAR(10),
    phone_number VARCHAR(20),
    high_school VARCHAR(100),
    high_school_year INTEGER,
    parent_name VARCHAR(100),
    parent_income DECIMAL(15, 2),
    parent_occupation VARCHAR(100),
    blood_type VARCHAR(5),
    health_insurance VARCHAR(50),
    accommodation VARCHAR(50),
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE student_fee (
    fee_id VARCHAR(50) PRIMARY KEY,
    student_id VARCHAR(20) NOT NULL REFERENCES students (student_id),
    ukt_fee DECIMAL(12, 2),
    bop_fee DECIMAL(12, 2),
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE lecturer (
    id SERIAL PRIMARY KEY,
    lecturer_id VARCHAR(20) UNIQUE NOT NULL,
    name VARCHAR(100) NOT NULL,
    email VARCHAR(100) NOT NULL,
    faculty_id INTEGER NOT NULL REFERENCES faculty (id),
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE room (
    id SERIAL PRIMARY KEY,
    room_code VARCHAR(20) UNIQUE NOT NULL,
    building VARCHAR(50) NOT NULL,
    capacity INTEGER NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE course (
    id SERIAL PRIMARY KEY,
    course_code VARCHAR(10) UNIQUE NOT NULL,
    course_name VARCHAR(100) NOT NULL,
    credits INTEGER NOT NULL,
    program_id INTEGER NOT NULL REFERENCES program (id),
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE registration (
    registration_id VARCHAR(50) PRIMARY KEY,
    student_id VARCHAR(20) NOT NULL REFERENCES students (student_id),
    academic_year VARCHAR(10) NOT NULL,
    semester INTEGER NOT NULL,
    semester_code VARCHAR(20) NOT NULL,
    registration_date DATE NOT NULL,
    registration_status VARCHAR(20) DEFAULT 'active',
    total_sks INTEGER DEFAULT 0,
    late_registration BOOLEAN DEFAULT FALSE,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE class (
    class_id VARCHAR(50) PRIMARY KEY,
    course_id INTEGER NOT NULL REFERENCES course (id),
    lecturer_id INTEGER NOT NULL REFERENCES lecturer (id),
    academic_year VARCHAR(10) NOT NULL,
    semester INTEGER NOT NULL,
    class_code VARCHAR(20) NOT NULL,
    room_code VARCHAR(20),
    schedule_day VARCHAR(10),
    schedule_time VARCHAR(20),
    capacity INTEGER DEFAULT 40,
    enrolled_count INTEGER DEFAULT 0,
    class_status VARCHAR(20) DEFAULT 'active',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE student_enrollment (
    enrollment_id SERIAL PRIMARY KEY,
    student_id VARCHAR(20) NOT NULL REFERENCES students (student_id),
    registration_id VARCHAR(50) NOT NULL REFERENCES registration (registration_id),
    class_id VARCHAR(50) NOT NULL REFERENCES class (class_id),
    enrollment_date DATE NOT NULL,
    enrollment_status VARCHAR(20) DEFAULT 'enrolled',
    final_grade DECIMAL(5, 2),
    grade_point DECIMAL(3, 2),
    attendance_percentage DECIMAL(5, 2),
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (student_id, class_id)
);

CREATE TABLE payment (
    payment_id VARCHAR(50) PRIMARY KEY,
    student_id VARCHAR(20) NOT NULL REFERENCES students (student_id),
    registration_id VARCHAR(50) NOT NULL REFERENCES registration (registration_id),
    payment_type VARCHAR(20) NOT NULL,
    payment_amount DECIMAL(12, 2) NOT NULL,
    bank_name VARCHAR(50),
    virtual_account_number VARCHAR(50),
    payment_channel VARCHAR(20),
    payment_time TIMESTAMP,
    payment_status VARCHAR(20) DEFAULT 'pending',
    installment_number INTEGER DEFAULT 1,
    late_fee_charged DECIMAL(12, 2) DEFAULT 0,
    total_paid_amount DECIMAL(12, 2),
    payment_proof_url TEXT,
    due_date DATE,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

ALTER TABLE faculty REPLICA IDENTITY FULL;
ALTER TABLE program REPLICA IDENTITY FULL;
ALTER TABLE students REPLICA IDENTITY FULL;
ALTER TABLE student_detail REPLICA IDENTITY FULL;
ALTER TABLE student_fee REPLICA IDENTITY FULL;
ALTER TABLE lecturer REPLICA IDENTITY FULL;
ALTER TABLE room REPLICA IDENTITY FULL;
ALTER TABLE course REPLICA IDENTITY FULL;
ALTER TABLE registration REPLICA IDENTITY FULL;
ALTER TABLE class REPLICA IDENTITY FULL;
ALTER TABLE student_enrollment REPLICA IDENTITY FULL;
ALTER TABLE payment REPLICA IDENTITY FULL;

-- A little seed data: Debezium's initial snapshot turns it into 'r' records on every topic.
INSERT INTO faculty (faculty_code, faculty_name) VALUES
    ('FIK', 'Fakultas Ilmu Komputer'),
    ('FT', 'Fakultas Teknik');

INSERT INTO program (program_code, program_name, faculty_id, degree) VALUES
    ('IF-S1', 'Informatika', 1, 'S1'),
    ('SI-S1', 'Sistem Informasi', 1, 'S1'),
    ('TS-S1', 'Teknik Sipil', 2, 'S1');

INSERT INTO students (student_id, full_name, entry_year, program_id, degree, faculty_id) VALUES
    ('2101001', 'Ayu Lestari', 2021, 1, 'S1', 1),
    ('2102001', 'Budi Santoso', 2021, 3, 'S1', 2);

INSERT INTO student_detail (student_id, gender, birth_date, birth_place, city, province, parent_income) VALUES
    ('2101001', 'F', '2003-04-12', 'Bandung', 'Depok', 'Jawa Barat', 8500000.00),
    ('2102001', 'M', '2002-11-30', 'Medan', 'Jakarta', 'DKI Jakarta', 12000000.50);

INSERT INTO student_fee (fee_id, student_id, ukt_fee, bop_fee) VALUES
    ('FEE-2101001-2024', '2101001', 5000000.00, 1500000.00);

INSERT INTO lecturer (lecturer_id, name, email, faculty_id) VALUES
    ('L001', 'Dr. Sari Wulandari', 'sari@example.ac.id', 1),
    ('L002', 'Ir. Hendra Gunawan', 'hendra@example.ac.id', 2);

INSERT INTO room (room_code, building, capacity) VALUES
    ('A-101', 'Gedung A', 40),
    ('B-201', 'Gedung B', 60);

INSERT INTO course (course_code, course_name, credits, program_id) VALUES
    ('IF101', 'Algoritma dan Pemrograman', 4, 1),
    ('TS101', 'Mekanika Teknik', 3, 3);

INSERT INTO registration (registration_id, student_id, academic_year, semester, semester_code, registration_date,
                          total_sks, late_registration) VALUES
    ('REG-2101001-20241', '2101001', '2024/2025', 1, '20241', '2024-08-19', 20, FALSE);

INSERT INTO class (class_id, course_id, lecturer_id, academic_year, semester, class_code, room_code, schedule_day,
                   schedule_time, enrolled_count) VALUES
    ('IF101-A-20241', 1, 1, '2024/2025', 1, 'A', 'A-101', 'Monday', '08:00-10:30', 1);

INSERT INTO student_enrollment (student_id, registration_id, class_id, enrollment_date, final_grade, grade_point,
                                attendance_percentage) VALUES
    ('2101001', 'REG-2101001-20241', 'IF101-A-20241', '2024-08-20', 85.50, 3.70, 93.75);

INSERT INTO payment (payment_id, student_id, registration_id, payment_type, payment_amount, bank_name,
                     payment_channel, payment_time, payment_status, total_paid_amount, due_date) VALUES
    ('PAY-2101001-20241-1', '2101001', 'REG-2101001-20241', 'UKT', 5000000.00, 'Bank Mandiri', 'virtual_account',
     '2024-08-15 10:21:07', 'paid', 5000000.00, '2024-08-31');
