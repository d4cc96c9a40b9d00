-- An original JellyChat database (the 2023 Supabase schema of github.com/0ptim/JellyChat:
-- users(user_id, user_token), chat_messages(message_type enum, "timestamp"), qa(date),
-- embeddings and embeddings_defichain_python with their match_* functions) upgraded in
-- place to the shape of this project's first chat schema, so that every migration after
-- this one goes on exactly as on an older database of ours.
--
-- Runs first (its version sorts before the others) and does nothing on any other
-- database. Every user, message and Q&A pair keeps its row and its id. The embedding
-- tables are set aside here and become knowledge-base chunks in
-- *_jellychat_original_knowledge.sql, once the knowledge tables exist. What was converted
-- is recorded in public.jelly_original_upgrade, which the server logs and
-- `flask --app app db upgrade` prints.

do $$
declare
    v_counts jsonb := '{}'::jsonb;
    v_fk record;
    v_col record;
    v_seq text;
    v_max bigint;
    v_users boolean := exists (
        select 1 from information_schema.columns
        where table_schema = 'public' and table_name = 'users' and column_name = 'user_token');
    v_messages boolean := exists (
        select 1 from information_schema.columns
        where table_schema = 'public' and table_name = 'chat_messages'
          and column_name = 'message_type');
    v_qa boolean := exists (
        select 1 from information_schema.columns
        where table_schema = 'public' and table_name = 'qa' and column_name = 'date')
        and not exists (
        select 1 from information_schema.columns
        where table_schema = 'public' and table_name = 'qa' and column_name = 'created_at');
begin
    if not (v_users or v_messages or v_qa or to_regclass('public.embeddings') is not null
            or to_regclass('public.embeddings_defichain_python') is not null) then
        return;  -- not an original JellyChat database
    end if;

    -- The user foreign keys are dropped while the key columns change type, and come back
    -- with this project's delete rules.
    if v_messages then
        for v_fk in
            select c.conname from pg_constraint c
            where c.conrelid = 'public.chat_messages'::regclass and c.contype = 'f'
        loop
            execute format('alter table public.chat_messages drop constraint %I', v_fk.conname);
        end loop;
    end if;

    -- users(user_id serial, user_token) -> users(id, token, created_at)
    if v_users then
        alter table public.users rename column user_id to id;
        alter table public.users rename column user_token to token;
        alter table public.users alter column id type bigint;
        alter index if exists public.users_user_token rename to users_token_key;
        alter table public.users add column created_at timestamptz;
        if v_messages then
            -- the original kept no creation time: a user's first message is the best witness
            update public.users u set created_at = m.first
            from (select user_id, min("timestamp") as first from public.chat_messages
                  group by user_id) m
            where m.user_id = u.id;
        end if;
        update public.users set created_at = now() where created_at is null;
        alter table public.users alter column created_at set default now();
        alter table public.users alter column created_at set not null;
        v_counts := v_counts || jsonb_build_object('users', (select count(*) from public.users));
    end if;

    -- chat_messages(message_type enum, "timestamp") -> chat_messages(type text, created_at)
    if v_messages then
        alter table public.chat_messages rename column message_type to type;
        alter table public.chat_messages alter column type type text using type::text;
        alter table public.chat_messages add constraint chat_messages_type_check
            check (type in ('human', 'jelly', 'tool'));
        alter table public.chat_messages rename column "timestamp" to created_at;
        alter table public.chat_messages alter column created_at set default clock_timestamp();
        alter table public.chat_messages alter column user_id type bigint;
        alter table public.chat_messages add column if not exists application text;
        alter table public.chat_messages add constraint chat_messages_user_id_fkey
            foreign key (user_id) references public.users (id) on delete cascade;
        create index if not exists chat_messages_user_id_idx on public.chat_messages (user_id, id);
        v_counts := v_counts || jsonb_build_object(
            'chat_messages', (select count(*) from public.chat_messages),
            'chat_messages_by_type', (select coalesce(jsonb_object_agg(t.type, t.n), '{}'::jsonb)
                                      from (select type, count(*) as n from public.chat_messages
                                            group by type) t));
        begin
            drop type if exists public.messagetype;
        exception when dependent_objects_still_exist then
            null;  -- something else uses the enum: leave it
        end;
    end if;

    -- qa(date timestamp) -> qa(created_at timestamptz, user_id, application, sources)
    if v_qa then
        alter table public.qa rename column date to created_at;
        -- the original wrote CURRENT_TIMESTAMP into a column without time zone, i.e. the
        -- server's local time: read it back in the same zone
        alter table public.qa alter column created_at type timestamptz;
        v_counts := v_counts || jsonb_build_object(
            'qa_without_date', (select count(*) from public.qa where created_at is null));
        update public.qa set created_at = now() where created_at is null;
        alter table public.qa alter column created_at set default clock_timestamp();
        alter table public.qa alter column created_at set not null;
        alter table public.qa add column if not exists user_id bigint
            references public.users (id) on delete set null;
        alter table public.qa add column if not exists application text;
        alter table public.qa add column if not exists sources jsonb not null default '[]'::jsonb;
        create index if not exists qa_created_at_idx on public.qa (created_at desc, id desc);
        v_counts := v_counts || jsonb_build_object('qa', (select count(*) from public.qa));
        if v_messages then
            -- The original stored pairs without their asker. A pair whose question and
            -- answer are one user's human message and the next answer gets that user (and
            -- the question's application); a pair more than one user asked stays anonymous.
            with pairs as (
                select h.user_id, h.application, h.content as question, j.content as answer
                from public.chat_messages h
                join lateral (
                    select m.content from public.chat_messages m
                    where m.user_id = h.user_id and m.id > h.id and m.type = 'jelly'
                    order by m.id limit 1) j on true
                where h.type = 'human'
            ),
            matched as (
                select q.id, min(p.user_id) as user_id, count(distinct p.user_id) as askers,
                       min(nullif(p.application, '')) as application
                from public.qa q join pairs p on p.question = q.question and p.answer = q.answer
                group by q.id
            )
            update public.qa q set user_id = m.user_id, application = m.application
            from matched m where q.id = m.id and m.askers = 1;
            v_counts := v_counts || jsonb_build_object(
                'qa_linked_to_users', (select count(*) from public.qa where user_id is not null));
        end if;
    end if;

    -- serial keys -> identity columns, continuing after the highest id
    for v_col in
        select c.table_name from information_schema.columns c
        where c.table_schema = 'public' and c.column_name = 'id' and c.is_identity = 'NO'
          and ((c.table_name = 'users' and v_users) or (c.table_name = 'chat_messages' and v_messages)
               or (c.table_name = 'qa' and v_qa))
    loop
        v_seq := pg_get_serial_sequence(format('public.%I', v_col.table_name), 'id');
        execute format('alter table public.%I alter column id drop default', v_col.table_name);
        execute format('alter table public.%I alter column id type bigint', v_col.table_name);
        if v_seq is not null then
            execute format('drop sequence %s', v_seq);
        end if;
        execute format('alter table public.%I alter column id add generated by default as identity',
                       v_col.table_name);
        execute format('select max(id) from public.%I', v_col.table_name) into v_max;
        if v_max is not null then
            perform setval(pg_get_serial_sequence(format('public.%I', v_col.table_name), 'id'), v_max);
        end if;
    end loop;

    -- The embedding tables wait for the knowledge tables; their functions return uuid ids
    -- and would block this project's match_embeddings (same arguments, bigint ids).
    if to_regclass('public.embeddings') is not null then
        alter table public.embeddings rename to jelly_original_embeddings_wiki;
    end if;
    if to_regclass('public.embeddings_defichain_python') is not null then
        alter table public.embeddings_defichain_python
            rename to jelly_original_embeddings_defichainpython;
    end if;
    for v_fk in
        select p.oid::regprocedure as fn from pg_proc p
        where p.pronamespace = 'public'::regnamespace
          and p.proname in ('match_embeddings', 'match_embeddings_defichain_python')
          and pg_get_function_result(p.oid) like '%id uuid%'
    loop
        execute format('drop function %s', v_fk.fn);
    end loop;

    create table if not exists public.jelly_original_upgrade (
        step text primary key,
        counts jsonb not null,
        converted_at timestamptz not null default now()
    );
    alter table public.jelly_original_upgrade enable row level security;
    insert into public.jelly_original_upgrade (step, counts) values ('chat', v_counts)
    on conflict (step) do update set counts = excluded.counts, converted_at = now();
end
$$;
